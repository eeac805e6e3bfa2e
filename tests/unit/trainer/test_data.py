"""trainer.data: Iris or any numeric CSV in; one clear DataError per way data is unusable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irisflow.errors import DataError
from irisflow.settings import DataSettings
from trainer.data import (
    IRIS_FEATURES,
    Dataset,
    check_class_sizes,
    combine,
    fingerprint,
    load_dataset,
)


def _load(
    tmp_path: Path, csv: str, *, label: str = "kind", features: tuple[str, ...] = ()
) -> Dataset:
    (tmp_path / "data.csv").write_text(csv)
    data = DataSettings(source="data.csv", label_column=label, feature_columns=features)
    return load_dataset(data, base_dir=tmp_path)


def test_iris_ships_with_scikit_learn_and_has_readable_feature_and_class_names() -> None:
    data = load_dataset(DataSettings())
    assert data.X.shape == (150, 4)
    assert data.X.dtype == np.float64
    assert data.feature_names == IRIS_FEATURES
    assert data.class_labels == ("setosa", "versicolor", "virginica")
    assert data.class_counts() == {"setosa": 50, "versicolor": 50, "virginica": 50}
    assert data.source == "iris"


def test_params_can_narrow_and_reorder_the_iris_features() -> None:
    full = load_dataset(DataSettings())
    narrow = load_dataset(DataSettings(feature_columns=("petal_width", "sepal_length")))
    assert narrow.feature_names == ("petal_width", "sepal_length")
    np.testing.assert_array_equal(narrow.X, full.X[:, [3, 0]])


def test_the_fingerprint_is_stable_across_loads() -> None:
    first, second = load_dataset(DataSettings()), load_dataset(DataSettings())
    assert first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 64
    assert first.fingerprint == fingerprint(first.X, first.y, first.feature_names)


def test_the_fingerprint_changes_with_any_value_label_or_feature_name() -> None:
    data = load_dataset(DataSettings())
    nudged = data.X.copy()
    nudged[0, 0] += 0.1
    relabeled = data.y.copy()
    relabeled[0] = "virginica"
    renamed = ("a", *data.feature_names[1:])
    others = {
        fingerprint(nudged, data.y, data.feature_names),
        fingerprint(data.X, relabeled, data.feature_names),
        fingerprint(data.X, data.y, renamed),
    }
    assert len(others) == 3
    assert data.fingerprint not in others


def test_a_relative_csv_path_is_read_from_the_params_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "flowers.csv").write_text("x,kind\n1.5,a\n2.5,b\n")
    data = load_dataset(
        DataSettings(source="data/flowers.csv", label_column="kind"), base_dir=tmp_path
    )
    assert data.source == str(tmp_path / "data" / "flowers.csv")
    np.testing.assert_array_equal(data.X, [[1.5], [2.5]])


def test_every_column_but_the_label_is_a_feature_when_none_are_listed(tmp_path: Path) -> None:
    data = _load(tmp_path, "b,kind,a\n1,x,10\n2,y,20\n")
    assert data.feature_names == ("b", "a")
    np.testing.assert_array_equal(data.X, [[1.0, 10.0], [2.0, 20.0]])


def test_listed_feature_columns_are_used_in_the_listed_order(tmp_path: Path) -> None:
    data = _load(tmp_path, "a,b,c,kind\n1,2,3,x\n4,5,6,y\n", features=("c", "a"))
    assert data.feature_names == ("c", "a")
    np.testing.assert_array_equal(data.X, [[3.0, 1.0], [6.0, 4.0]])


def test_labels_are_strings_exactly_as_written_in_the_file(tmp_path: Path) -> None:
    data = _load(tmp_path, "x,kind\n1,01\n2,2\n3,01\n")
    assert data.y.tolist() == ["01", "2", "01"]
    assert data.class_labels == ("01", "2")


def test_a_missing_csv_file_says_which_file_and_which_setting(tmp_path: Path) -> None:
    data = DataSettings(source="nowhere.csv", label_column="kind")
    with pytest.raises(DataError, match=r"nowhere\.csv not found: fix data\.source"):
        load_dataset(data, base_dir=tmp_path)


def test_a_csv_without_the_label_column_lists_the_columns_it_has(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no label column 'kind' \(columns: x, y\)"):
        _load(tmp_path, "x,y\n1,a\n2,b\n")


def test_missing_feature_columns_are_all_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no feature column\(s\) 'z', 'w' .*data\.feature_columns"):
        _load(tmp_path, "x,kind\n1,a\n2,b\n", features=("x", "z", "w"))


def test_a_csv_with_a_non_numeric_feature_names_the_column_and_a_bad_value(
    tmp_path: Path,
) -> None:
    with pytest.raises(DataError, match=r"'x' is not numeric \(e\.g\. 'oops' in data row 2\)"):
        _load(tmp_path, "x,y,kind\n1,1,a\noops,2,b\n")


def test_empty_feature_values_are_counted_per_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"NaN values in column\(s\) 'y' \(2\)"):
        _load(tmp_path, "x,y,kind\n1,,a\n2,NaN,b\n3,3,a\n")


def test_an_empty_label_is_reported_like_an_empty_feature(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"NaN values in column\(s\) 'kind' \(1\)"):
        _load(tmp_path, "x,kind\n1,a\n2,\n3,b\n")


def test_infinite_feature_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="infinite feature values"):
        _load(tmp_path, "x,kind\n1,a\ninf,b\n")


def test_a_single_class_cannot_train_a_classifier(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"1 class \('a'\); a classifier needs at least two"):
        _load(tmp_path, "x,kind\n1,a\n2,a\n")


def test_the_label_column_cannot_also_be_a_feature(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="feature_columns lists the label column 'kind'"):
        _load(tmp_path, "x,kind\n1,a\n2,b\n", features=("x", "kind"))


def test_a_feature_column_cannot_be_listed_twice(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="names x more than once"):
        _load(tmp_path, "x,kind\n1,a\n2,b\n", features=("x", "x"))


def test_a_csv_with_only_a_label_column_has_no_features(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no feature columns besides the label 'kind'"):
        _load(tmp_path, "kind\na\nb\n")


def test_a_class_too_small_for_stratified_folds_is_named_with_its_count(tmp_path: Path) -> None:
    data = _load(tmp_path, "x,kind\n" + "1,big\n" * 6 + "2,rare\n" * 2)
    check_class_sizes(data, minimum=2, needed_for="2-fold CV")
    with pytest.raises(DataError, match=r"class\(es\) 'rare' \(2\) have fewer than the 3 rows"):
        check_class_sizes(data, minimum=3, needed_for="3-fold CV")


def test_combining_appends_recent_labels_and_refingerprints() -> None:
    base = load_dataset(DataSettings())
    extra_x = np.array([[5.0, 3.0, 1.5, 0.2], [6.0, 2.0, 4.0, 1.0]])
    merged = combine(base, extra_x, np.array(["setosa", "hybrid"]))
    assert merged.X.shape == (152, 4)
    np.testing.assert_array_equal(merged.X[-2:], extra_x)
    assert merged.y[-1] == "hybrid"
    assert merged.class_labels == ("hybrid", "setosa", "versicolor", "virginica")
    assert merged.fingerprint != base.fingerprint
    assert merged.source == "iris+2 labeled"


def test_combining_nothing_returns_the_base_data_unchanged() -> None:
    base = load_dataset(DataSettings())
    assert combine(base, np.empty((0, 4)), np.array([], dtype=str)) is base


def test_combining_rows_of_the_wrong_width_is_refused() -> None:
    base = load_dataset(DataSettings())
    with pytest.raises(DataError, match=r"1 rows of 4 finite features .*got shape \(1, 3\)"):
        combine(base, np.array([[1.0, 2.0, 3.0]]), np.array(["setosa"]))
