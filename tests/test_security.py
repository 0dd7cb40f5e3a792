"""Untrusted configs and model files cannot write or read files, reach the interpreter or
allocate unbounded memory.

Data configs travel inside ONNX files, so every expression (data configs, embedded configs,
``branch_map``) is checked against the allow-list of :mod:`hepnn_coffea.features.allowlist`
when it is parsed, before any data is read; ONNX files are checked before onnxruntime opens
them (:mod:`hepnn_coffea.inference.model_check`).
"""

from __future__ import annotations

import copy
import pathlib

import awkward as ak
import numpy as np
import pytest
import yaml

from hepnn_coffea import OnnxTagger
from hepnn_coffea.config.data_config import ConfigError, DataConfig
from hepnn_coffea.features import allowlist, guards
from hepnn_coffea.features.expressions import Expression, ExpressionError, VariableTable
from hepnn_coffea.inference.tagger import TaggerError
from hepnn_coffea.inference.weaver import load_weaver_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "weaver_pfn"
ONNX = FIXTURE / "pfn.onnx"
WEAVER_YAML = FIXTURE / "topqcd_kin.auto.yaml"

#: (hostile expression, text the error must contain); ``{tmp}`` is a test's empty tmp_path
HOSTILE: list[tuple[str, str]] = [
    ("jet_pt * 0 + np.savetxt('{tmp}/evil.pth', [0], header='import os', comments='')", "'np.savetxt'"),
    ("np.save('{tmp}/a.npy', jet_pt)", "'np.save'"),
    ("np.savez('{tmp}/a.npz', x=jet_pt)", "'np.savez'"),
    ("np.savez_compressed('{tmp}/a.npz', jet_pt)", "'np.savez_compressed'"),
    ("np.load('{tmp}/a.npy')", "'np.load'"),
    ("np.loadtxt('{tmp}/a.txt')", "'np.loadtxt'"),
    ("np.genfromtxt('{tmp}/a.txt')", "'np.genfromtxt'"),
    ("np.fromfile('{tmp}/a.bin')", "'np.fromfile'"),
    ("np.memmap('{tmp}/a.bin', mode='w+', shape=(10,))", "'np.memmap'"),
    ("np.lib.format.open_memmap('{tmp}/a.npy', mode='w+', shape=(10,))", "'np.lib'"),
    ("numpy.lib.npyio.savetxt('{tmp}/a.txt', jet_pt)", "'numpy.lib'"),
    ("np.DataSource('{tmp}').open('{tmp}/a.txt', 'w')", "'np.DataSource'"),
    ("ak.to_numpy(jet_pt).tofile('{tmp}/a.bin')", "'tofile'"),
    ("ak.to_numpy(jet_pt).dump('{tmp}/a.pkl')", "'dump'"),
    ("ak.to_parquet(jet_pt, '{tmp}/a.parquet')", "'ak.to_parquet'"),
    ("ak.from_parquet('{tmp}/a.parquet')", "'ak.from_parquet'"),
    ("ak.to_json(jet_pt, '{tmp}/a.json')", "'ak.to_json'"),
    ("ak.from_json('{tmp}/a.json')", "'ak.from_json'"),
    ("ak.to_feather(jet_pt, '{tmp}/a.feather')", "'ak.to_feather'"),
    ("ak.from_feather('{tmp}/a.feather')", "'ak.from_feather'"),
    ("awkward.to_buffers(jet_pt)", "'awkward.to_buffers'"),
    ("np.ctypeslib.load_library('libc', '{tmp}')", "'np.ctypeslib'"),
    ("__import__('os').system('touch {tmp}/a')", "'__import__'"),
    ("jet_pt.__class__.__base__", "'__class__'"),
    ("getattr(np, 'save')('{tmp}/a.npy', jet_pt)", "'getattr'"),
    ("open('{tmp}/a.txt', 'w')", "'open'"),
    ("eval('1')", "'eval'"),
    ("np.__dict__", "'__dict__'"),
    ("'{{0.__globals__}}'.format(jet_pt)", "'format'"),
    ("'%s' % jet_pt", "sequence"),
    ("f'{{jet_pt}}'", "'JoinedStr'"),
    ("jet_pt['__class__']", "'__class__'"),
    ("np.ones(10**12)", "'np.ones'"),
    ("np.zeros((10**6, 10**6))", "'np.zeros'"),
    ("np.empty(10**9)", "'np.empty'"),
    ("np.full(10**9, 1.0)", "'np.full'"),
    ("np.arange(10**12)", "'np.arange'"),
    ("np.linspace(0, 1, 10**12)", "'np.linspace'"),
    ("np.repeat(jet_pt, 10**9)", "'np.repeat'"),
    ("np.tile(jet_pt, 10**9)", "'np.tile'"),
    ("np.random.bytes(10**9)", "'np.random'"),
    ("'a' * 10**10", "sequence"),
    ("[0] * 10**10", "sequence"),
    ("(0,) * 10**10", "sequence"),
    ("2 ** 10 ** 10", "exponent"),
    ("1 << 10 ** 6", "exponent/shift"),
    ("ak.pad_none(jet_pt, 10**9)", "'ak.pad_none' with target=1e+09"),
    ("ak.pad_none(jet_pt, target=10**9)", "'ak.pad_none' with target=1e+09"),
    ("np.bincount(jet_idx, minlength=10**12)", "'np.bincount' with minlength=1e+12"),
    ("ak.combinations(jet_pt, 10)", "'ak.combinations'"),
    ("ak.cartesian([jet_pt, jet_pt])", "'ak.cartesian'"),
    ("np.outer(jet_pt, jet_pt)", "'np.outer'"),
    ("np.add.outer(jet_pt, jet_pt)", "attribute 'outer' of 'np.add'"),
    ("jet_pt[:, None] * jet_pt", "None (np.newaxis)"),
    ("np.log(jet_pt, out=jet_pt)", "keyword 'out='"),
    (
        "np.log(jet_pt, jet_pt)",
        "'np.log' with 2 positional arguments is not allowed (argument 2 would be an output",
    ),
    ("np.add(jet_pt, jet_pt, jet_pt)", "'np.add' with 3 positional arguments"),
    ("np.clip(jet_pt, 0, 1, jet_pt)", "'np.clip' with 4 positional arguments is not allowed (at most 3)"),
    ("np.nan_to_num(jet_pt, False)", "'np.nan_to_num' with 2 positional arguments"),
    ("np.nan_to_num(jet_pt, copy=False)", "keyword 'copy='"),
    ("np.add(jet_pt, 1, where=jet_pt > 1e9)", "keyword 'where='"),
    ("np.diff(jet_pt, 10**9)", "'np.diff'"),
    ("np.ones_like(jet_pt, shape=(10**6, 10**6))", "keyword 'shape='"),
    ("(lambda: np)()", "'Lambda'"),
    ("[x for x in jet_pt]", "'ListComp'"),
    ("{{x: 1 for x in jet_pt}}", "'DictComp'"),
    ("(y := jet_pt)", "'NamedExpr'"),
    ("np.log(*jet_pt)", "'Starred'"),
    ("np.log(**jet_pt)", "'**' arguments"),
    ("np", "module 'np'"),
    ("np.log", "'np.log' is not allowed as a value"),
    ("alias.save('{tmp}/a.npy', jet_pt)", "attribute 'save'"),
    ("part_p4.lib.save('{tmp}/a.npy', jet_pt)", "attribute 'lib'"),
    ("np.frompyfunc(np.save, 2, 0)", "'np.frompyfunc'"),
    ("np.vectorize(np.log)(jet_pt)", "'np.vectorize'"),
    ("np.apply_along_axis(np.log, 0, jet_pt)", "'np.apply_along_axis'"),
    ("np.piecewise(jet_pt, [jet_pt > 0], [np.log])", "'np.piecewise'"),
    ("np.einsum('i,j->ij', jet_pt, jet_pt)", "'np.einsum'"),
    ("ak.behavior", "'ak.behavior'"),
    ("jet_pt.layout", "'layout'"),
    ("jet_pt.behavior", "'behavior'"),
    ("ak.to_numpy(jet_pt).fill(0)", "'fill'"),
    ("ak.to_numpy(jet_pt).ctypes", "'ctypes'"),
    ("np.float64('1e308')", "string constant '1e308'"),
    ("b'abc'", "bytes"),
    ("{{'a': jet_pt}}", "'Dict'"),
    ("ak.zip([jet_pt], with_name='Momentum4D')", "keyword 'with_name='"),
    ("jet_pt @ jet_pt", "'@'"),
    ("x if jet_pt else print", "'print'"),
    ("jet_pt.to_list()", "'to_list'"),
    ("events.add_systematic('x', 'UpDownSystematic', 'pt', 0)", "'add_systematic'"),
    ("ak.to_numpy(jet_pt).sort()", "'sort'"),
    ("ak.to_numpy(jet_pt).dot(jet_pt, jet_pt)", "'.dot' with 2 positional arguments"),
    ("jet_pt[idx_a, idx_b]", "more than one array"),
    ("(ak.sum if jet_pt else ak.max)(jet_pt)", "'ak.sum' is not allowed as a value"),
]


def _tmp_text(expression: str, tmp: pathlib.Path) -> str:
    return expression.format(tmp=tmp)


def _raw_config() -> dict:
    return load_weaver_config(WEAVER_YAML).to_dict()


def test_there_are_enough_hostile_expressions() -> None:
    assert len(HOSTILE) >= 30
    assert len({e for e, _ in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize(("expression", "named"), HOSTILE, ids=[e[:50] for e, _ in HOSTILE])
def test_hostile_expression_is_rejected_when_parsed(
    tmp_path: pathlib.Path, expression: str, named: str
) -> None:
    text = _tmp_text(expression, tmp_path)
    with pytest.raises(ExpressionError) as info:
        Expression(text)
    message = str(info.value)
    assert named in message, message
    assert "not allowed" in message or "too large" in message, message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("expression", "named"), HOSTILE[:40], ids=[e[:50] for e, _ in HOSTILE[:40]])
def test_hostile_new_variable_is_rejected_by_the_data_config(
    tmp_path: pathlib.Path, expression: str, named: str
) -> None:
    raw = _raw_config()
    raw["new_variables"]["part_evil"] = _tmp_text(expression, tmp_path)
    with pytest.raises(ConfigError) as info:
        DataConfig.from_dict(raw, source="hostile.yaml")
    message = str(info.value)
    assert message.startswith("hostile.yaml: new_variables.part_evil: "), message
    assert named in message, message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key", ["selection", "test_time_selection", "labels", "filters", "experts"])
def test_every_expression_of_a_data_config_is_checked(tmp_path: pathlib.Path, key: str) -> None:
    evil = f"jet_pt * 0 + np.savetxt('{tmp_path}/evil.pth', [0])"
    raw = _raw_config()
    if key == "labels":
        raw["labels"] = {"type": "custom", "value": {"target": evil}}
    elif key == "filters":
        raw["filters"] = [{"expression": evil}]
    elif key == "experts":
        raw["experts"] = {"variable": evil, "bins": [1.0]}
    else:
        raw[key] = evil
    with pytest.raises(ConfigError, match=r"hostile\.yaml.*'np\.savetxt' is not allowed"):
        DataConfig.from_dict(raw, source="hostile.yaml")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("expression", "named"),
    HOSTILE[:12] + HOSTILE[30:40],
    ids=[e[:50] for e, _ in HOSTILE[:12] + HOSTILE[30:40]],
)
def test_hostile_branch_map_is_rejected_by_the_tagger(
    tmp_path: pathlib.Path, expression: str, named: str
) -> None:
    with pytest.raises(TaggerError) as info:
        OnnxTagger(ONNX, data_config=WEAVER_YAML, branch_map={"part_px": _tmp_text(expression, tmp_path)})
    message = str(info.value)
    assert str(ONNX) in message and "branch_map['part_px']" in message and named in message, message
    assert list(tmp_path.iterdir()) == []


def test_module_alias_through_a_variable_is_rejected(tmp_path: pathlib.Path) -> None:
    raw = _raw_config()
    raw["new_variables"].update(alias="np", part_evil=f"alias.save('{tmp_path}/a.npy', part_px)")
    with pytest.raises(ConfigError, match=r"new_variables\.alias: .*module 'np' is not allowed as a value"):
        DataConfig.from_dict(raw, source="hostile.yaml")


# ------------------------------------------------------------------ run-time guards
def _table(definitions: dict[str, str]) -> VariableTable:
    n = 50
    source = {
        "jet_pt": ak.Array(np.arange(1.0, n + 1)),
        "part_pt": ak.Array([[1.0, 2.0, 3.0]] * n),
        "jet_idx": ak.Array(np.arange(n)),
    }
    return VariableTable(source, definitions, where="events.root")


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ("_stack(jet_pt) + jet_pt", "operator Add would broadcast shapes [(50, 1), (50,)] to (50, 50)"),
        ("ak.to_numpy(_stack(jet_pt)) * ak.to_numpy(jet_pt)", "would broadcast"),
        ("_stack(jet_pt) < jet_pt", "comparison Lt would broadcast"),
        ("np.hypot(_stack(jet_pt), jet_pt)", "calling hypot would broadcast"),
        ("np.where(jet_pt > 0) * 1000000000", "arithmetic (Mult) on tuple and int"),
        ("ak.unzip(ak.zip([jet_pt, jet_pt])) * 1000000000", "arithmetic (Mult) on tuple and int"),
        (
            "ak.pad_none(part_pt, ak.num(jet_pt, axis=0) * 10000)",
            "ak.pad_none target 500000 is larger than 100000",
        ),
        (
            "np.bincount(ak.to_numpy(jet_idx) * 0 + ak.num(jet_pt, axis=0) * 10**7)",
            "np.bincount would make 500000001 bins",
        ),
    ],
)
def test_run_time_limits_name_variable_and_file(expression: str, named: str) -> None:
    table = _table({"evil": expression})
    with pytest.raises(ExpressionError) as info:
        table["evil"]
    message = str(info.value)
    assert (
        "'evil'" in message and "events.root" in message and "LimitError" in message and named in message
    ), message


def test_padding_is_bounded_in_total() -> None:
    lists = ak.Array([[1.0]] * 1000)
    with pytest.raises(guards.LimitError, match="ak.pad_none to 100000 would make 100000000 elements"):
        guards.pad_none(lists, 100_000)
    assert ak.to_list(guards.pad_none(lists, 2)[0]) == [1.0, None]


def test_python_integer_growth_is_bounded() -> None:
    with pytest.raises(guards.LimitError, match="bits"):
        guards.binop("Pow", 10**100, 10**6)
    with pytest.raises(guards.LimitError, match="bits"):
        guards.binop("LShift", 1, 10**6)
    with pytest.raises(guards.LimitError, match="bits"):
        guards.binop("Mult", 2**3000, 2**3000)
    assert guards.binop("Pow", 10, 12) == 10**12


def test_the_namespaces_hold_only_the_allow_list() -> None:
    spaces = guards.namespaces()
    for alias in ("np", "numpy", "ak", "awkward", "math"):
        names = set(vars(spaces[alias]))
        assert names <= set(allowlist.members(allowlist.MODULES[alias])), alias
    for name in ("save", "savetxt", "load", "lib", "memmap", "fromfile", "ctypeslib", "random", "zeros"):
        assert not hasattr(spaces["np"], name)
    for name in ("to_parquet", "from_parquet", "to_json", "behavior", "cartesian", "combinations"):
        assert not hasattr(spaces["ak"], name)


def test_allowed_expressions_still_evaluate() -> None:
    table = _table(
        {
            "lead": "ak.max(part_pt, axis=1) / jet_pt",
            "n": "ak.num(part_pt, axis=1)",
            "pad": "ak.fill_none(ak.pad_none(part_pt, 5), 0.0)",
            "cast": "ak.values_astype(jet_pt > 10, 'float32')",
            "cnt": "np.bincount(ak.to_numpy(jet_idx) % 3, minlength=4)",
            "field": "jet_pt * 2 ** 10",
            "stacked": "_stack(jet_pt, jet_pt) * 2",
            "p4": "_p4_from_ptetaphim(part_pt, part_pt * 0, part_pt * 0, part_pt * 0).px",
        }
    )
    assert ak.to_list(table["n"])[:2] == [3, 3]
    assert ak.to_list(table["pad"][0]) == [1.0, 2.0, 3.0, 0.0, 0.0]
    assert str(ak.type(table["cast"])).endswith("float32")
    assert table["cnt"].tolist() == [17, 17, 16, 0]
    assert ak.to_list(table["field"])[0] == 1024.0
    assert ak.to_list(table["stacked"])[0] == [2.0, 2.0]
    np.testing.assert_allclose(ak.to_list(table["p4"][0]), [1.0, 2.0, 3.0])


# ----------------------------------------------------------------- shipped configs
def _expressions(raw: dict) -> list[str]:
    out = [str(v) for v in (raw.get("new_variables") or {}).values()]
    out += [str(raw[k]) for k in ("selection", "test_time_selection") if raw.get(k)]
    labels = raw.get("labels") or {}
    if isinstance(labels.get("value"), dict):
        out += [str(v) for v in labels["value"].values()]
    if isinstance(raw.get("experts"), dict) and raw["experts"].get("variable"):
        out.append(str(raw["experts"]["variable"]))
    stack = list(raw.get("filters") or [])
    while stack:
        spec = stack.pop()
        if isinstance(spec, dict):
            out += [str(spec[k]) for k in ("expression", "range") if k in spec]
            stack += [s for k in ("all_of", "any_of") for s in spec.get(k) or []]
    return out


def test_every_shipped_expression_parses() -> None:
    files = sorted((ROOT / "models").rglob("*.yaml")) + sorted((ROOT / "tests" / "fixtures").rglob("*.yaml"))
    expressions = {}
    for path in files:
        raw = yaml.safe_load(path.read_text())
        if isinstance(raw, dict):
            expressions.update({e: path for e in _expressions(raw)})
    from processors.nanoaod_toptag import NANOAOD_BRANCH_MAP

    expressions.update({e: "NANOAOD_BRANCH_MAP" for e in NANOAOD_BRANCH_MAP.values()})
    assert len(expressions) > 60  # not vacuous: the calo, top and weaver configs
    for expression, where in expressions.items():
        try:
            Expression(expression)
        except ExpressionError as err:  # pragma: no cover - the failure message
            pytest.fail(f"{where}: {err}")


def test_shipped_data_configs_load() -> None:
    paths = sorted((ROOT / "models" / "data").glob("*.yaml"))
    configs = [p for p in paths if p.name != "calo_geometry.yaml"]  # the one detector-constants file
    assert len(configs) >= 7
    for path in configs:
        assert DataConfig.from_yaml(path).input_names, path
    assert load_weaver_config(WEAVER_YAML).input_names


# ---------------------------------------------------------------------- documentation
def test_docs_list_the_allow_list_generated_from_the_code() -> None:
    text = (ROOT / "docs" / "expressions.md").read_text()
    section = text.split("<!-- allowlist:start -->\n", 1)[1].split("<!-- allowlist:end -->", 1)[0]
    assert section == allowlist.render_markdown(), "regenerate: python -m hepnn_coffea.features.allowlist"
    names = [
        *allowlist.NUMPY_UFUNCS,
        *allowlist.NUMPY_FUNCTIONS,
        *allowlist.NUMPY_DTYPES,
        *allowlist.NUMPY_CONSTANTS,
        *allowlist.AWKWARD_FUNCTIONS,
        *allowlist.MATH_FUNCTIONS,
        *allowlist.MATH_CONSTANTS,
        *allowlist.HELPER_FUNCTIONS,
        *allowlist.VECTOR_ATTRS,
        *allowlist.ARRAY_ATTRS,
        *allowlist.DTYPE_NAMES,
        *allowlist.FORBIDDEN_KEYWORDS,
        *allowlist.RESERVED_NAMES,
        *allowlist.DENIED_ATTRS,
    ]
    missing = [n for n in names if f"`{n}`" not in section]
    assert not missing, missing


def test_helpers_of_the_allow_list_exist() -> None:
    from hepnn_coffea.features.expressions import HELPERS

    assert set(allowlist.HELPER_FUNCTIONS) == {k for k in HELPERS if k.startswith("_")}
    raw = copy.deepcopy(_raw_config())
    assert DataConfig.from_dict(raw).new_variables == raw["new_variables"]
