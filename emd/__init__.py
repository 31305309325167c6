"""Exact Earth Mover's Distance between HGCAL modules on the hexagonal TC metric: the
compiled transportation simplex (`simplex`), the solvers and their parallel runners with a
content-keyed cache (`exact`), and their parameters."""
