import pytest

from mlops.ml.split import (
    SPLIT_BUCKET_COLUMN,
    DataSplitMethod,
    SplitError,
    SplitPlan,
    auto_split_eval_fraction,
    eval_bucket_threshold,
    eval_restriction,
    plan_split,
    row_bucket,
    split_rows,
)


def keyed_rows(count: int, start: int = 0) -> list[dict]:
    return [{"_row_id": f"row-{i}", "x": i} for i in range(start, start + count)]


def eval_keys(rows: list[dict], plan: SplitPlan) -> set[str]:
    return {row["_row_id"] for row in split_rows(rows, plan).eval_rows}


def test_row_bucket_is_pinned_so_sides_never_move_between_releases():
    # Changing the hash would silently move rows between train and eval in every pipeline.
    assert [row_bucket("abalone-00001"), row_bucket("row-1"), row_bucket(42)] == [6901, 5915, 1738]


def test_random_split_keeps_each_row_on_its_side_as_the_table_grows():
    plan = plan_split("RANDOM", 0, eval_fraction=0.2)
    old, grown = keyed_rows(1000), keyed_rows(1000) + keyed_rows(1500, start=1000)
    old_eval, grown_eval = eval_keys(old, plan), eval_keys(grown, plan)
    assert old_eval == {key for key in grown_eval if int(key.split("-")[1]) < 1000}
    champion_training = {row["_row_id"] for row in old} - old_eval
    assert not champion_training & grown_eval


def test_random_split_fraction_is_close_to_the_option():
    rows = keyed_rows(10_000)
    share = len(split_rows(rows, plan_split("RANDOM", len(rows), eval_fraction=0.25)).eval_rows) / len(rows)
    assert share == pytest.approx(0.25, abs=0.02)


def test_random_split_preserves_row_order_and_partitions():
    rows = keyed_rows(300)
    split = split_rows(rows, plan_split("RANDOM", 300))
    assert len(split.train_rows) + len(split.eval_rows) == 300
    assert [r["x"] for r in split.train_rows] == sorted(r["x"] for r in split.train_rows)


@pytest.mark.parametrize(("rows", "fraction"), [(0, 0.0), (499, 0.0), (500, 0.2), (50_000, 0.2), (100_000, 0.1)])
def test_auto_split_follows_bigquery_ml_rule(rows, fraction):
    assert auto_split_eval_fraction(rows) == pytest.approx(fraction)


def test_auto_split_under_500_rows_evaluates_on_training_rows():
    rows = keyed_rows(120)
    plan = plan_split(DataSplitMethod.AUTO_SPLIT, len(rows))
    split = split_rows(rows, plan)
    assert plan.method is DataSplitMethod.NO_SPLIT and plan.eval_is_training_data
    assert split.train_rows == split.eval_rows == rows


def test_auto_split_from_500_rows_is_the_random_rule():
    plan = plan_split("AUTO_SPLIT", 800)
    assert plan == SplitPlan(DataSplitMethod.RANDOM, 0.2)


def test_seq_split_takes_the_last_fraction_in_order_nulls_first():
    rows = [{"_row_id": f"r{i}", "t": t} for i, t in enumerate([5, None, 3, 9, 1, 7, 2, 8, 4, 6])]
    split = split_rows(rows, plan_split("SEQ", len(rows), eval_fraction=0.3, split_column="t"))
    assert sorted(r["t"] for r in split.eval_rows) == [7, 8, 9]
    assert None in [r["t"] for r in split.train_rows]


def test_seq_split_old_training_rows_stay_training_rows():
    plan = plan_split("SEQ", 0, eval_fraction=0.2, split_column="x")
    old, grown = keyed_rows(100), keyed_rows(150)
    old_train = {r["_row_id"] for r in split_rows(old, plan).train_rows}
    assert not old_train & eval_keys(grown, plan)


def test_custom_split_true_or_null_is_eval():
    rows = [{"_row_id": "a", "is_eval": True}, {"_row_id": "b", "is_eval": False}, {"_row_id": "c", "is_eval": None}]
    split = split_rows(rows, plan_split("CUSTOM", 3, split_column="is_eval"))
    assert [r["_row_id"] for r in split.eval_rows] == ["a", "c"]


def test_custom_split_rejects_non_bool_values():
    with pytest.raises(SplitError, match="must be BOOL"):
        split_rows([{"_row_id": "a", "flag": "yes"}], plan_split("CUSTOM", 1, split_column="flag"))


def test_missing_row_key_is_reported():
    with pytest.raises(SplitError, match="_row_id"):
        split_rows([{"x": 1}], plan_split("RANDOM", 1))


@pytest.mark.parametrize(("method", "kwargs", "message"), [
    ("SEQ", {}, "needs data_split_col"),
    ("CUSTOM", {}, "needs data_split_col"),
    ("RANDOM", {"eval_fraction": 1.5}, "between 0 and 1"),
])
def test_plan_split_rejects_incomplete_options(method, kwargs, message):
    with pytest.raises(SplitError, match=message):
        plan_split(method, 10, **kwargs)


def test_threshold_rounds_half_up():
    assert eval_bucket_threshold(0.2) == 2000
    assert eval_bucket_threshold(1 / 6) == 1667


# -- the bucket a snapshot stores (SPLIT_BUCKET_COLUMN, FARM_FINGERPRINT computed by the warehouse) -------

def bucketed_rows(buckets: list[int | None]) -> list[dict]:
    return [{"_row_id": f"row-{i}", SPLIT_BUCKET_COLUMN: bucket} for i, bucket in enumerate(buckets)]


def test_a_stored_bucket_decides_the_side_not_a_hash_of_the_key():
    plan = plan_split("RANDOM", 0, eval_fraction=0.2, bucket_column=SPLIT_BUCKET_COLUMN)
    rows = bucketed_rows([0, 1999, 2000, 9999, 1500])
    assert eval_keys(rows, plan) == {"row-0", "row-1", "row-4"}  # bucket < round(0.2 * 10,000)


def test_auto_split_keeps_the_bucket_column_once_it_splits():
    assert plan_split("AUTO_SPLIT", 800, bucket_column=SPLIT_BUCKET_COLUMN).bucket_column == SPLIT_BUCKET_COLUMN
    assert plan_split("AUTO_SPLIT", 100, bucket_column=SPLIT_BUCKET_COLUMN).method is DataSplitMethod.NO_SPLIT
    assert plan_split("SEQ", 10, eval_fraction=0.2, split_column="t",
                      bucket_column=SPLIT_BUCKET_COLUMN).bucket_column is None


def test_a_row_without_a_stored_bucket_cannot_be_split():
    plan = plan_split("RANDOM", 0, eval_fraction=0.2, bucket_column=SPLIT_BUCKET_COLUMN)
    with pytest.raises(SplitError, match="row 1 has no '_split_bucket'"):
        split_rows(bucketed_rows([5, None]), plan)


@pytest.mark.parametrize(("plan", "restriction"), [
    (plan_split("RANDOM", 0, eval_fraction=0.25, bucket_column=SPLIT_BUCKET_COLUMN), (SPLIT_BUCKET_COLUMN, "<", 2500)),
    (plan_split("AUTO_SPLIT", 1_000_000, bucket_column=SPLIT_BUCKET_COLUMN), (SPLIT_BUCKET_COLUMN, "<", 100)),
    (plan_split("CUSTOM", 0, split_column="is_eval"), ("is_eval", "is not false", None)),
    (plan_split("RANDOM", 0, eval_fraction=0.25), None),  # a blake2b bucket: no column holds it
    (plan_split("SEQ", 0, eval_fraction=0.25, split_column="t"), None),
    (plan_split("NO_SPLIT", 0), None),
])
def test_the_eval_side_is_a_row_restriction_where_a_column_holds_it(plan, restriction):
    assert eval_restriction(plan) == restriction


def test_a_read_restricted_to_the_eval_rows_splits_as_the_whole_snapshot():
    plan = plan_split("RANDOM", 0, eval_fraction=0.3, bucket_column=SPLIT_BUCKET_COLUMN)
    rows = bucketed_rows([(i * 7919) % 10_000 for i in range(500)])
    column, _, threshold = eval_restriction(plan)
    restricted = [row for row in rows if row[column] < threshold]
    assert split_rows(restricted, plan).eval_rows == split_rows(rows, plan).eval_rows
