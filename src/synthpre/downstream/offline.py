"""Two real downstream tasks built from data that every installation has (no download).

``pycode_summarize``: functions of the running interpreter's standard library -> the first line of their
docstring (code summarization, as CodeXGLUE's).  ``smiles_canonicalize``: the 5,000 NCI molecules that the
RDKit wheel ships (``rdkit/Data/NCI/first_5K.smi``) written as randomized SMILES -> RDKit's canonical
SMILES.  Both are deterministic: same installation, same examples, same split.
"""

from __future__ import annotations

import ast
import sysconfig
import warnings
import zlib
from functools import lru_cache
from pathlib import Path

from synthpre.downstream.readers import TextExample, example
from synthpre.errors import UserError

# --- pycode_summarize ---------------------------------------------------------------------------------
CODE_INPUT_CHARS = 100  # the function's code, whitespace collapsed, first 100 characters
DOCSTRING_CHARS = (10, 70)  # first docstring lines outside this length range are dropped
SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
# A fixed split by the hash of the qualified name: about 1 function in 11.6 for each held-out split.
SPLIT_BUCKETS = 1000
CODE_HELD_OUT = {"test": range(0, 86), "validation": range(86, 172)}


def stdlib_python_files(root: Path) -> list[Path]:
    """The interpreter's standard-library ``.py`` files, tests and third-party packages excluded, sorted."""
    return sorted(p for p in root.rglob("*.py") if not SKIPPED_DIRS.intersection(p.relative_to(root).parts))


def stdlib_modules() -> list[tuple[str, Path]]:
    """(dotted module name, file) of the running interpreter's standard library (``sysconfig``'s
    ``stdlib`` folder, as :func:`stdlib_python_files` filters it), sorted by file."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return [(".".join(p.relative_to(root).with_suffix("").parts), p) for p in stdlib_python_files(root)]


def parse_python(path: Path) -> ast.Module | None:
    """The syntax tree of a standard-library file; None for one that does not parse on this interpreter."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old modules
            return ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None


def functions_with_docstrings(path: Path, module: str) -> list[tuple[str, str, str]]:
    """(qualified name, code without its docstring, first docstring line) of every function in a file."""
    tree = parse_python(path)
    if tree is None:
        return []
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                docstring = ast.get_docstring(child)
                if docstring:
                    child.body = child.body[1:] or [ast.Pass()]
                    code = " ".join(ast.unparse(child).split())
                    found.append((f"{prefix}{child.name}", code, docstring.strip().splitlines()[0].strip()))

    visit(tree, f"{module}.")
    return found


def split_of(key: str, held_out: dict[str, range]) -> str:
    bucket = zlib.crc32(key.encode()) % SPLIT_BUCKETS
    return next((name for name, buckets in held_out.items() if bucket in buckets), "train")


@lru_cache(maxsize=1)
def pycode_examples() -> dict[str, list[TextExample]]:
    """All splits of ``pycode_summarize``; duplicate inputs keep the first qualified name in sorted order."""
    pairs = []
    for module, path in stdlib_modules():
        pairs.extend(functions_with_docstrings(path, module))
    splits: dict[str, list[TextExample]] = {"train": [], "validation": [], "test": []}
    seen: set[str] = set()
    lo, hi = DOCSTRING_CHARS
    for name, code, summary in sorted(pairs):
        code = code[:CODE_INPUT_CHARS]
        if not lo <= len(summary) <= hi or not summary.isascii() or code in seen:
            continue
        seen.add(code)
        splits[split_of(name, CODE_HELD_OUT)].append(example(name, code, summary))
    return splits


def read_pycode(split: str) -> list[TextExample]:
    return pycode_examples()[split]


# --- smiles_canonicalize -----------------------------------------------------------------------------
MAX_CANONICAL_CHARS = 60
VARIANTS_PER_TRAIN_MOLECULE = 10  # the 11th randomized SMILES is the input for validation and test
RANDOM_SMILES_SEED = 1234
HELD_OUT_MOLECULES = 500  # per held-out split


def nci_smiles_file() -> Path:
    from rdkit import RDConfig

    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    if not path.is_file():
        raise UserError(f"smiles_canonicalize: {path} is missing from this RDKit installation")
    return path


@lru_cache(maxsize=1)
def smiles_examples() -> dict[str, list[TextExample]]:
    """Molecules with canonical SMILES <= 60 characters, split by molecule (ranked by a hash of the
    canonical SMILES: 500 test, 500 validation, the rest train), 10 randomized inputs per train molecule."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    molecules: dict[str, Chem.Mol] = {}
    for line in nci_smiles_file().read_text().splitlines():
        mol = Chem.MolFromSmiles(line.split()[0]) if line.strip() else None
        if mol is not None:
            canonical = Chem.MolToSmiles(mol)
            if len(canonical) <= MAX_CANONICAL_CHARS:
                molecules.setdefault(canonical, mol)
    ranked = sorted(molecules, key=lambda s: (zlib.crc32(s.encode()), s))
    held_out = {
        "test": ranked[:HELD_OUT_MOLECULES],
        "validation": ranked[HELD_OUT_MOLECULES : 2 * HELD_OUT_MOLECULES],
    }
    held_out["train"] = ranked[2 * HELD_OUT_MOLECULES :]
    splits: dict[str, list[TextExample]] = {}
    for split, canonicals in held_out.items():
        rows = []
        for k, canonical in enumerate(canonicals):
            variants = list(Chem.MolToRandomSmilesVect(molecules[canonical], VARIANTS_PER_TRAIN_MOLECULE + 1,
                                                       randomSeed=RANDOM_SMILES_SEED))  # fmt: skip
            inputs = variants[:VARIANTS_PER_TRAIN_MOLECULE] if split == "train" else variants[-1:]
            rows.extend(example(f"{split}-{k}-{v}", smiles, canonical) for v, smiles in enumerate(inputs))
        splits[split] = rows
    return splits


def read_smiles(split: str) -> list[TextExample]:
    return smiles_examples()[split]
