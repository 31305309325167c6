"""HGCAL trigger-cell (TC) geometry of one 8-inch hexagonal module.

The 48 TCs of a module are indexed by their CALQ index 0-47 (the column order of the
ECON-T data). The hexagon is three 16-TC rhombi (CALQ 0-15, 16-31, 32-47). Everything the
rest of the project needs about the geometry lives here, so that every stage (labels,
losses, images fed to networks) agrees on one definition:

* `tc_centres()`: TC centres scaled so adjacent TCs are exactly 2.0 apart;
* `distance_matrix()`: the EMD ground distance (Euclidean distance between those centres);
* `calq_to_8x8` / `image8x8_to_calq`: the 8x8 image of the ECON-T autoencoder (the
  bottom-right 4x4 block is dead and always zero);
* `calq_to_4x4x3` / `image4x4x3_to_calq`: one 4x4 channel per rhombus.

The CSV tables (`tables/`) are shipped as package data (copies of the shared geometry tables).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources

import numpy as np

N_TC = 48
#: TC pitch in the coordinate table's units (cm); half of it is the scale unit.
TC_PITCH = 2.4168015
COORD_SCALE = 0.5 * TC_PITCH

#: CALQ index held by each pixel of the 8x8 image, row-major; -1 marks the dead pixels.
CALQ_OF_PIXEL_8X8 = np.array(
    [28, 29, 30, 31, 0, 4, 8, 12,
     24, 25, 26, 27, 1, 5, 9, 13,
     20, 21, 22, 23, 2, 6, 10, 14,
     16, 17, 18, 19, 3, 7, 11, 15,
     47, 43, 39, 35, -1, -1, -1, -1,
     46, 42, 38, 34, -1, -1, -1, -1,
     45, 41, 37, 33, -1, -1, -1, -1,
     44, 40, 36, 32, -1, -1, -1, -1],
    dtype=np.int64,
)
LIVE_PIXELS_8X8 = np.flatnonzero(CALQ_OF_PIXEL_8X8 >= 0)
#: pixel (0-63) of the 8x8 image that holds each CALQ index.
PIXEL_OF_CALQ_8X8 = np.empty(N_TC, dtype=np.int64)
PIXEL_OF_CALQ_8X8[CALQ_OF_PIXEL_8X8[LIVE_PIXELS_8X8]] = LIVE_PIXELS_8X8
#: 0/1 mask of live pixels, shape (8, 8).
MASK_8X8 = (CALQ_OF_PIXEL_8X8 >= 0).astype(np.float32).reshape(8, 8)


def stc_order() -> np.ndarray:
    """CALQ indices ordered so that each run of 4 is a 2x2 block of the (u, v) grid of a
    rhombus and each run of 16 a whole rhombus: the TC order after an ECON-T MUX set up
    for super trigger cells (STC4 = 4 consecutive TCs, STC16 = 16)."""
    img = CALQ_OF_PIXEL_8X8.reshape(8, 8)
    order = []
    for rhombus in range(3):
        rows, cols = np.nonzero((img >= 16 * rhombus) & (img < 16 * (rhombus + 1)))
        block = img[rows.min():rows.min() + 4, cols.min():cols.min() + 4]
        for r in (0, 2):
            for c in (0, 2):
                order.extend(block[r:r + 2, c:c + 2].ravel().tolist())
    return np.array(order, dtype=np.int64)


def _read_table(name: str) -> np.ndarray:
    text = resources.files(__package__).joinpath("tables", name).read_text()
    return np.loadtxt(text.splitlines(), delimiter=",", skiprows=1)


@lru_cache(maxsize=1)
def tc_centres() -> np.ndarray:
    """(48, 2) TC centres in units of half the TC pitch (adjacent TCs 2.0 apart)."""
    table = _read_table("tc_hex_coords.csv")
    order = np.argsort(table[:, 0])
    if not np.array_equal(table[order, 0], np.arange(N_TC)):
        raise RuntimeError("tc_hex_coords.csv must list CALQ indices 0-47 exactly once")
    centres = table[order, 1:3] / COORD_SCALE
    centres.setflags(write=False)
    return centres


@lru_cache(maxsize=1)
def remap_table() -> np.ndarray:
    """(48, 4) int table: tc_cellu, tc_cellv, CALQ index, AE-block index.

    The AE-block index (0-47) is the TC's slot in the autoencoder's block layout: slots 0-31
    are pixels 0-31 of the 8x8 image, slots 32-47 fill the live 4x4 block of rows 4-7 row by
    row (slot 32 + 4r + c is pixel 8(4 + r) + c). `pixel_of_ae_block` converts.
    """
    return _read_table("tc_remap.csv").astype(np.int64)


def pixel_of_ae_block(slot: np.ndarray) -> np.ndarray:
    """Map AE-block slots (0-47) of the remap table to 8x8 pixel indices (0-63)."""
    slot = np.asarray(slot)
    low = slot - 32
    return np.where(slot < 32, slot, 32 + 8 * (low // 4) + low % 4)


@lru_cache(maxsize=1)
def ae_slot_of_calq() -> np.ndarray:
    """(48,) the AE-block slot of each CALQ index (the remap table's last column).

    The ECON-T autoencoder places the TC leaving its MUX as TC i at slot i of its 8x8 image,
    so a MUX set up for the autoencoder delivers the module in slot order, not in CALQ
    order: `calq_from_ae_slots` turns such data into CALQ columns."""
    table = remap_table()
    slots = np.empty(N_TC, dtype=np.int64)
    slots[table[:, 2]] = table[:, 3]
    if sorted(slots.tolist()) != list(range(N_TC)):
        raise RuntimeError("tc_remap.csv must map the 48 CALQ indices onto the 48 AE slots")
    slots.setflags(write=False)
    return slots


@lru_cache(maxsize=1)
def econt_input_table() -> np.ndarray:
    """(48, 5) int table: tc_cellu, tc_cellv, CALQ index, ECON-T input TC, ECON-T TC after
    the standard MUX, one row per CALQ index in order.

    Where each cell enters the ECON-T, as the CMS tool that made the golden vectors' inputs
    from simulation packs it (`getDataFromMC.py` of cmantill/ECONT_Emulator, with its
    `Utils/LDM_TC_Mapping.csv`): the cell (u, v) is input TC `ECON_TC_Number_PreMux`, the
    four input TCs 4l..4l+3 of link l from the bits next to the header down (the newer
    order of `econt.links`), and the standard MUX sends it on as TC
    `ECON_TC_Number_PostMux` (runs of 4 are the super trigger cells' 2x2 blocks). The CALQ
    index is the (u, v) cell's in `remap_table` (which numbers cells as CMSSW does)."""
    raw = _read_table("econt_inputs.csv").astype(np.int64)
    calq_of_uv = {(int(u), int(v)): int(c) for u, v, c, _ in remap_table()}
    try:
        calq = np.array([calq_of_uv[(int(u), int(v))] for u, v, _, _ in raw], dtype=np.int64)
    except KeyError as exc:
        raise RuntimeError(f"econt_inputs.csv: cell {exc.args[0]} is not in tc_remap.csv") from None
    for name, col in (("CALQ index", calq), ("input", raw[:, 2]), ("MUX output", raw[:, 3])):
        if sorted(col.tolist()) != list(range(N_TC)):
            raise RuntimeError(f"econt_inputs.csv must place the 48 cells on the 48 {name}s once each")
    table = np.column_stack([raw[:, :2], calq, raw[:, 2:]])[np.argsort(calq)]
    table.setflags(write=False)
    return table


def econt_input_of_calq() -> np.ndarray:
    """(48,) the ECON-T input TC holding each CALQ index (`econt_input_table`): a MUX
    register image that delivers a module in CALQ order (TC i = input[mux[i]])."""
    return econt_input_table()[:, 3].copy()


def calq_from_ae_slots(x: np.ndarray) -> np.ndarray:
    """(..., 48) charges in AE-slot order (an autoencoder MUX's output) -> CALQ order."""
    return _check_calq(x)[..., ae_slot_of_calq()]


def ae_slots_from_calq(x: np.ndarray) -> np.ndarray:
    """(..., 48) CALQ-ordered charges -> AE-slot order (the inverse of `calq_from_ae_slots`)."""
    out = np.empty_like(_check_calq(x))
    out[..., ae_slot_of_calq()] = x
    return out


@lru_cache(maxsize=1)
def distance_matrix() -> np.ndarray:
    """(48, 48) float64 Euclidean ground distance between scaled TC centres."""
    c = tc_centres()
    d = np.sqrt(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1))
    d.setflags(write=False)
    return d


@lru_cache(maxsize=1)
def geometry_hash() -> str:
    """Short content hash of the geometry: stored next to labels and models so that a
    model trained on one TC layout is never silently used with another."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(tc_centres()).tobytes())
    h.update(CALQ_OF_PIXEL_8X8.tobytes())
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def neighbours(max_distance: float = 2.5) -> tuple[np.ndarray, ...]:
    """Tuple of 48 arrays: the CALQ indices of each TC's adjacent TCs.

    Inside a rhombus adjacent TCs are 2.0 apart; across the seams between rhombi the
    nearest TCs are 1.80 or 2.29 apart; the next ring starts at 3.04."""
    d = distance_matrix()
    return tuple(np.flatnonzero((d[i] > 0) & (d[i] <= max_distance)) for i in range(N_TC))


def _check_calq(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.shape[-1] != N_TC:
        raise ValueError(f"expected the last axis to hold {N_TC} TCs, got shape {x.shape}")
    return x


def calq_to_8x8(x: np.ndarray) -> np.ndarray:
    """(..., 48) -> (..., 8, 8) image; the 16 dead pixels are zero."""
    x = _check_calq(x)
    flat = np.zeros(x.shape[:-1] + (64,), dtype=x.dtype)
    flat[..., PIXEL_OF_CALQ_8X8] = x
    return flat.reshape(x.shape[:-1] + (8, 8))


def image8x8_to_calq(img: np.ndarray) -> np.ndarray:
    """(..., 8, 8) image (or (..., 8, 8, 1)) -> (..., 48); dead pixels are ignored."""
    img = np.asarray(img)
    if img.shape[-1] == 1 and img.ndim >= 3 and img.shape[-3:] == (8, 8, 1):
        img = img[..., 0]
    if img.shape[-2:] != (8, 8):
        raise ValueError(f"expected (..., 8, 8) images, got shape {img.shape}")
    return img.reshape(img.shape[:-2] + (64,))[..., PIXEL_OF_CALQ_8X8]


def calq_to_4x4x3(x: np.ndarray) -> np.ndarray:
    """(..., 48) -> (..., 4, 4, 3): channel c is rhombus c, pixel (r, col) = CALQ 4r+col+16c."""
    x = _check_calq(x)
    return np.moveaxis(x.reshape(x.shape[:-1] + (3, 4, 4)), -3, -1)


def image4x4x3_to_calq(img: np.ndarray) -> np.ndarray:
    """(..., 4, 4, 3) -> (..., 48), the inverse of `calq_to_4x4x3`."""
    img = np.asarray(img)
    if img.shape[-3:] != (4, 4, 3):
        raise ValueError(f"expected (..., 4, 4, 3) images, got shape {img.shape}")
    return np.moveaxis(img, -1, -3).reshape(img.shape[:-3] + (N_TC,))
