import h5py
import numpy as np
import pytest

from econ_emd.data.loaders import CALQ_COLUMNS, DataError, load_modules, read_csv, read_hdf5


def write_csv(path, rows, header=None):
    lines = []
    if header is not None:
        lines.append(",".join(header))
    lines += [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_with_header_and_metadata_columns(tmp_path, modules):
    header = ["entry", "zside", "layer"] + CALQ_COLUMNS[::-1] + ["tc_eta"]  # any column order
    rows = [[i, 1, 5] + list(m[::-1].astype(int)) + [2.1] for i, m in enumerate(modules[:20])]
    got = read_csv(write_csv(tmp_path / "a.csv", rows, header))
    np.testing.assert_array_equal(got, modules[:20])


def test_csv_without_header_takes_first_48_columns(tmp_path, modules):
    rows = [list(m.astype(int)) + [7, 8] for m in modules[:10]]
    got = read_csv(write_csv(tmp_path / "b.csv", rows))
    np.testing.assert_array_equal(got, modules[:10])


def test_zero_sum_rows_dropped_and_counted(tmp_path, modules):
    rows = [list(m.astype(int)) for m in modules[:10]] + [[0] * 48] * 3
    loaded = load_modules("csv", write_csv(tmp_path / "c.csv", rows))
    assert loaded.n_read == 13 and loaded.n_zero_sum == 3
    assert loaded.charges.shape == (10, 48)


def test_directory_of_csv_files(tmp_path, modules):
    d = tmp_path / "dir"
    d.mkdir()
    write_csv(d / "1.csv", [list(m) for m in modules[:5]], CALQ_COLUMNS)
    write_csv(d / "2.csv", [list(m) for m in modules[5:9]])
    loaded = load_modules("csv", d)
    np.testing.assert_array_equal(loaded.charges, modules[:9])
    assert load_modules("csv", d, max_rows=6).charges.shape == (6, 48)


@pytest.mark.parametrize("cell, message", [
    ("nan", r"row 3, column CALQ_5: charge nan is not finite"),
    ("inf", r"row 3, column CALQ_5: charge inf is not finite"),
    ("-4", r"row 3, column CALQ_5: charge -4.0 is negative"),
    ("abc", r"row 3, column CALQ_5 \(column 6\): not a number: 'abc'"),
])
def test_bad_cells_name_file_row_and_column(tmp_path, cell, message):
    rows = [[1] * 48 for _ in range(4)]
    rows[1][5] = cell       # second data row = line 3 of the file (after the header)
    path = write_csv(tmp_path / "bad.csv", rows, CALQ_COLUMNS)
    with pytest.raises(DataError, match=rf"bad\.csv: {message}"):
        read_csv(path)


def test_wrong_column_counts(tmp_path):
    short = write_csv(tmp_path / "short.csv", [[1] * 40])
    with pytest.raises(DataError, match="row 1 has 40 columns"):
        read_csv(short)
    ragged = write_csv(tmp_path / "ragged.csv", [[1] * 48, [1] * 47, [1] * 48])
    with pytest.raises(DataError, match="row 2 has 47 columns, expected 48"):
        read_csv(ragged)
    long = write_csv(tmp_path / "long.csv", [[1] * 48, [1] * 49])
    with pytest.raises(DataError, match="row 2 has 49 columns, expected 48"):
        read_csv(long)
    missing = write_csv(tmp_path / "hdr.csv", [[1] * 47], CALQ_COLUMNS[:47])
    with pytest.raises(DataError, match="header lacks 1 charge column.*CALQ_47"):
        read_csv(missing)


def test_empty_inputs(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        read_csv(tmp_path / "empty.csv")
    header_only = write_csv(tmp_path / "h.csv", [], CALQ_COLUMNS)
    with pytest.raises(DataError, match="no data rows"):
        read_csv(header_only)
    with pytest.raises(DataError, match="no such file"):
        load_modules("csv", tmp_path / "nope.csv")
    zeros = write_csv(tmp_path / "z.csv", [[0] * 48])
    with pytest.raises(DataError, match="zero charge sum"):
        load_modules("csv", zeros)


def test_hdf5_dataset_and_columns(tmp_path, modules):
    p = tmp_path / "m.h5"
    with h5py.File(p, "w") as fh:
        fh["calq"] = np.hstack([modules[:30], np.ones((30, 3))])
    np.testing.assert_array_equal(read_hdf5(p), modules[:30])
    q = tmp_path / "cols.h5"
    with h5py.File(q, "w") as fh:
        for i, c in enumerate(CALQ_COLUMNS):
            fh[c] = modules[:12, i]
    np.testing.assert_array_equal(load_modules("hdf5", q).charges, modules[:12])


def test_hdf5_errors(tmp_path, modules):
    p = tmp_path / "two.h5"
    with h5py.File(p, "w") as fh:
        fh["a"] = modules[:3]
        fh["b"] = modules[:3]
    with pytest.raises(DataError, match="several 2D datasets"):
        read_hdf5(p)
    with pytest.raises(DataError, match="no dataset or group 'c'"):
        read_hdf5(p, key="c")
    bad = tmp_path / "bad.h5"
    arr = modules[:5].copy()
    arr[3, 7] = np.nan
    with h5py.File(bad, "w") as fh:
        fh["x"] = arr
    with pytest.raises(DataError, match="row 3, column CALQ_7: charge nan is not finite"):
        read_hdf5(bad)
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        read_hdf5(tmp_path / "junk.h5")
