"""The GPU check (issue 13): one call that installs synthpre beside a GPU machine's own torch, proves
the GPU path and measures it, in at most 8 minutes on one H200.  ``--dry-run`` runs the same parts,
tiny and on the CPU, in a minute or two (the tests run it, so the script cannot rot).

    python3 benchmarks/gpu_check.py --out OUT --wheels .whl     # on the GPU machine (no registry)
    python3 benchmarks/gpu_check.py --out OUT --dry-run         # anywhere
    python3 benchmarks/gpu_check.py --fetch-wheels .whl [NAME ...]   # first, where PyPI is reachable

Everything printed goes to ``OUT/gpu_check.log`` too (children run with PYTHONUNBUFFERED=1), the
figures to ``OUT/gpu_check.json``, rewritten after every part.  The parts share the time budget
(``--budget``, 480 s) by ``SHARES``; time a part leaves unused goes to the later ones.  Each command is
killed at its part's limit; a part that fails or runs out of time is recorded, and the next one runs:

- ``install``: the wheels of ``--wheels`` (``pip --no-index --no-deps``; the machine's torch and
  accelerate are never replaced), this checkout (``pip install --no-deps -e .``), then which of
  pyproject's requirements and their dependencies the environment lacks;
- ``tests``: ``pytest -m gpu`` (``tests/test_gpu.py``; on a GPU none may be skipped);
- ``throughput``: ``benchmarks/train_throughput.py``, t5-small (batch 128) and t5-base (batch 64) at
  512/512, bf16 + TF32 + compile, ``fixed`` then ``synthetic``, the engine against HF's
  ``Seq2SeqTrainer``: tokens/s, MFU (measured bf16 matrix rate, datasheet), peak memory, ratio;
- ``fsdp``: ``--fsdp`` on one GPU through ``accelerate launch`` (one process: not sharded) and
  ``torchrun`` (a world of one: sharded), cut after step 2 and resumed; the two must agree;
- ``set``: ``synthpre pretrain --task set --model t5-small`` with App. A's settings (bf16 + TF32 +
  compile; 1,024 validation examples instead of 10,000) for 500 steps: steps/s and the projected
  time of App. A's 80K steps.

Sources of every child are this checkout's (``src`` first on PYTHONPATH).  The exit code is 0 when
every part passed.  Before the set part, the script itself imports the standard library alone, and
``packaging`` (which pip, transformers and accelerate need anyway) to read requirements and wheels.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
LOG, REPORT = "gpu_check.log", "gpu_check.json"
BUDGET_S = 480.0  # the 8 minutes
SHARES = {"install": 35, "tests": 75, "throughput": 215, "fsdp": 35, "set": 120}  # of the budget
IMAGE_OWN = ("torch", "accelerate")  # the GPU machine's own builds: never fetched, never replaced
APP_A_STEPS = 80_000
KILL_GRACE_S = 5.0
RUNNER = 'import sys\nfrom synthpre.cli import main\nsys.argv[0] = "synthpre"\nmain()\n'
GOALS = {  # the goals: the figure (see ``goals``) and the least it may be
    "t5-small MFU (datasheet bf16, fixed 512/512) >= 25%": ("mfu:t5-small", 0.25),
    "t5-base MFU (datasheet bf16, fixed 512/512) >= 35%": ("mfu:t5-base", 0.35),
    "engine >= 1.3x Seq2SeqTrainer tokens/s (t5-small, synthetic)": ("ratio:t5-small", 1.3),
    "engine >= 1.3x Seq2SeqTrainer tokens/s (t5-base, synthetic)": ("ratio:t5-base", 1.3),
}
SET_HOURS_GOAL = 1.0


@dataclass(frozen=True)
class Sizes:
    """What the parts run: the GPU check's sizes, or the dry run's tiny ones (same code, same flags
    but ``gpu_flags``)."""

    gpu_flags: tuple[str, ...]  # bf16 everywhere; TF32 and compile on the GPU only
    throughput: tuple[tuple[str, int, str, int], ...]  # (model, batch, scenarios, share)
    throughput_args: tuple[str, ...]
    set_args: tuple[str, ...]
    set_skip_steps: int  # compile and warm-up: steps/s is timed after this step
    threads: tuple[str, ...] = ()


GPU = Sizes(
    gpu_flags=("--precision", "bf16", "--tf32", "--compile"),
    throughput=(
        ("t5-small", 128, "fixed", 70),
        ("t5-base", 64, "fixed", 80),
        ("t5-small", 128, "synthetic", 70),
        ("t5-base", 64, "synthetic", 40),
    ),
    throughput_args=("--max-len", "512", "--trainers", "engine,hf", "--steps", "10", "--warmup", "3",
                     "--repeats", "1"),
    set_args=("--model", "t5-small", "--max-steps", "500", "--log-every", "50", "--num-val-examples", "1024"),
    set_skip_steps=100,
)  # fmt: skip
DRY = Sizes(
    gpu_flags=("--precision", "bf16"),  # compile takes minutes on a CPU; HF refuses TF32 there
    throughput=(("t5-tiny", 4, "fixed,synthetic", 1),),
    throughput_args=("--max-len", "32", "--trainers", "engine,hf", "--steps", "2", "--warmup", "1",
                     "--repeats", "1", "--matmul-size", "128"),
    set_args=("--model", "t5-tiny", "--vocab", "3:127", "--min-len", "5", "--max-len", "30",
              "--batch-size", "16", "--max-input-len", "64", "--max-target-len", "64", "--max-steps", "12",
              "--log-every", "4", "--num-val-examples", "16"),
    set_skip_steps=0,
    threads=("--threads", "1"),
)  # fmt: skip

# t5-tiny on the identity task (tests/tiny_runs.py's run): small enough for three launches.
FSDP_RUN = ("--task", "identity", "--model", "t5-tiny", "--vocab", "3:12", "--min-len", "1", "--max-len", "6",
            "--max-input-len", "16", "--max-target-len", "16", "--batch-size", "8", "--dropout", "0",
            "--eval-every", "2", "--save-every", "2", "--num-val-examples", "16", "--log-every", "1",
            "--no-progress", "--fsdp")  # fmt: skip
# The sharded run, cut after step 2 and resumed, against the unsharded one: weights within 1e-5,
# losses and accuracies within 1e-4 (the 2-process CPU test's bounds); printed as JSON.
COMPARE_RUNS = """
import json, math, sys
from pathlib import Path
from safetensors.torch import load_file
from synthpre.train.metrics import read_metrics

one, sharded, step = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
files = [run / "checkpoints" / f"step_{step}" / "model" / "model.safetensors" for run in (one, sharded)]
weights = [load_file(file) for file in files]
common = weights[0].keys() & weights[1].keys()
diff = max((weights[0][k] - weights[1][k]).abs().max().item() for k in common)
rows = [read_metrics(run) for run in (one, sharded)]
keys = ("loss", "token_accuracy", "val_loss", "val_token_accuracy")
rows_agree = [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]] and all(
    math.isclose(a[k], b[k], rel_tol=1e-4, abs_tol=1e-6) for a, b in zip(*rows) for k in keys if k in a)
print(json.dumps({"max_weight_diff": diff, "weights_missing": sorted(weights[0].keys() - common),
                  "rows_agree": rows_agree, "steps": [r["step"] for r in rows[1] if r["split"] == "val"]}))
"""


class PartFailed(Exception):
    """A check of a part did not hold (the part is recorded as failed; the next part runs)."""


@dataclass
class Result:
    command: list[str]
    rc: int | None
    seconds: float
    timed_out: bool
    output: str

    def record(self) -> dict[str, Any]:
        return {"command": shown(self.command), "rc": self.rc, "seconds": round(self.seconds, 1),
                "timed_out": self.timed_out}  # fmt: skip


def shown(command: list[str]) -> str:
    """The command as a shell line, a script given to ``python -c`` shortened to its size."""
    return shlex.join(f"<{len(arg.splitlines())}-line script>" if "\n" in arg else arg for arg in command)


@dataclass
class Check:
    """The run of the check: where it writes, its clock, its log and its report."""

    out: Path
    work: Path
    dry_run: bool
    budget: float
    env: dict[str, str]
    log: IO[str]
    report: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def sizes(self) -> Sizes:
        return DRY if self.dry_run else GPU

    @property
    def runner(self) -> str:
        """A script that runs ``synthpre`` from this checkout's sources (a launcher's argument)."""
        return str(self.work / "synthpre_main.py")

    def remaining(self) -> float:
        return self.started + self.budget - time.monotonic()

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def execute(self, command: list[str], timeout: float) -> Result:
        """Run ``command`` in the checkout, its output (stderr too) printed and logged line by line;
        past ``timeout`` seconds its whole process group is stopped (SIGTERM, then SIGKILL)."""
        self.say(f"$ {shown(command)}    # at most {timeout:.0f} s")
        start = time.monotonic()
        process = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace", start_new_session=True,
        )  # fmt: skip
        lines: list[str] = []

        def pump(stream: IO[str]) -> None:
            for line in stream:
                lines.append(line)
                sys.stdout.write(line)
                sys.stdout.flush()
                self.log.write(line)
                self.log.flush()

        reader = threading.Thread(target=pump, args=(process.stdout,), daemon=True)
        reader.start()
        timed_out = False
        try:
            process.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_group(process)
        reader.join(timeout=KILL_GRACE_S)
        result = Result(command, process.returncode, time.monotonic() - start, timed_out, "".join(lines))
        self.say(f"# exit {result.rc} after {result.seconds:.1f} s" + (" (time limit)" if timed_out else ""))
        return result

    def write_report(self) -> None:
        self.report["elapsed_s"] = round(time.monotonic() - self.started, 1)
        text = json.dumps(self.report, indent=2)
        tmp = self.out / f".{REPORT}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.out / REPORT)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group of ``process``, SIGKILL after ``KILL_GRACE_S``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def fractions(shares: list[float]) -> list[float]:
    """For each of a sequence of commands, its share of the time still left when it starts (the
    last one takes all that is left): time one leaves unused goes to the later ones."""
    return [share / sum(shares[i:]) for i, share in enumerate(shares)]


@dataclass
class Part:
    """One part of the check: its commands, each bounded by a fraction of the part's time left, and
    its figures (kept when the part fails or runs out of time)."""

    check: Check
    record: dict[str, Any]
    deadline: float
    figures: dict[str, Any] = field(default_factory=dict)

    def run(self, command: list[str], fraction: float = 1.0, required: bool = True) -> Result:
        """``required``: a failed command fails the part at once (what follows depends on it)."""
        timeout = min(self.deadline - time.monotonic(), self.check.remaining()) * fraction
        result = self.check.execute(command, timeout)
        self.record["commands"].append(result.record())
        if result.timed_out:
            self.record["status"] = "timed_out"
        if required and result.rc != 0:
            raise PartFailed(f"`{shown(command[:4])} ...` " + ("ran out of time" if result.timed_out
                             else f"exited with {result.rc}"))  # fmt: skip
        return result

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]

    def synthpre(self, *args: str) -> list[str]:
        return [sys.executable, self.check.runner, *args]


# ---- the parts


def project_requirements() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def base_name(requirement: str) -> str:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return canonicalize_name(Requirement(requirement).name)


def requirement_report() -> dict[str, Any]:
    """What the environment lacks of pyproject's requirements and (recursively) theirs: each unmet
    requirement with what is installed, the installed versions, and the image's own builds."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    todo = [(Requirement(text), {""}) for text in project_requirements()]  # with the extras asked of
    versions: dict[str, str] = {}  # the package that requires it (its marker may name them)
    unmet: set[str] = set()
    own: dict[str, str] = {}
    while todo:
        requirement, extras = todo.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonicalize_name(requirement.name)
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            unmet.add(f"{requirement}: not installed")
            continue
        if name in IMAGE_OWN:  # kept whatever pyproject pins
            own[name] = f"{version} (pyproject: {requirement.specifier})"
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            unmet.add(f"{requirement}: {version} installed")
        if name in versions:
            continue
        versions[name] = version
        for text in metadata.requires(name) or []:
            try:
                todo.append((Requirement(text), requirement.extras | {""}))
            except InvalidRequirement:
                continue
    return {"unmet": sorted(unmet), "image_own": own, "versions": dict(sorted(versions.items()))}


ENVIRONMENT = """
import json, torch, transformers, accelerate
cuda = torch.cuda.is_available()
print(json.dumps({
    "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
    "accelerate": accelerate.__version__, "gpu": torch.cuda.get_device_name() if cuda else None,
    "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
}))
"""


def install_commands(wheels: Path | None) -> list[list[str]]:
    """The wheels brought along (never a torch or accelerate one), then this checkout, neither
    resolving dependencies: pip touches nothing else.  The checkout builds with the setuptools
    brought along when there is one (the machine's may be too old), else with the machine's."""
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir",
           "--no-compile", "--disable-pip-version-check"]  # fmt: skip
    found = sorted(wheels.glob("*.whl")) if wheels is not None else []
    names = {path: base_name(path.name.split("-")[0]) for path in found}
    commands = []
    if any(name not in IMAGE_OWN for name in names.values()):
        commands.append(
            [*pip, "--upgrade", *(str(path) for path, name in names.items() if name not in IMAGE_OWN)]
        )
    build = ["--find-links", str(wheels)] if "setuptools" in names.values() else ["--no-build-isolation"]
    commands.append([*pip, *build, "-e", str(REPO)])
    return commands


def install(part: Part, wheels: Path | None) -> None:
    commands = install_commands(wheels)
    failed = []
    for command in commands:
        if part.check.dry_run:  # the dry run installs nothing: it shows what it would run
            part.check.say(f"(dry run: not run) $ {shlex.join(command)}")
        elif part.run(command, fraction=0.6, required=False).rc != 0:
            failed.append(command[-1])
    part.figures["commands"] = [shlex.join(command) for command in commands]
    part.figures.update(requirement_report())
    part.check.say("unmet requirements: " + ("; ".join(part.figures["unmet"]) or "none"))
    environment = part.run(part.python("-c", ENVIRONMENT))
    part.figures["environment"] = json.loads(environment.output.splitlines()[-1])
    if failed:
        raise PartFailed(f"pip failed to install {', '.join(failed)}")


def junit_outcomes(path: Path) -> dict[str, str]:
    """Test name -> ``passed``, ``failed: MESSAGE`` or ``skipped: REASON``, from pytest's JUnit XML."""
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for kind, word in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
            element = case.find(kind)
            if element is not None:
                outcome = f"{word}: {(element.get('message') or '').strip()[:300]}"
                break
        outcomes[case.get("name", "?")] = outcome
    return outcomes


def tests(part: Part) -> None:
    xml = part.check.work / "gpu_tests.xml"
    command = part.python("-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q", "-rA",
                          "-p", "no:cacheprovider", f"--junitxml={xml}")  # fmt: skip
    result = part.run(command, required=False)
    outcomes = junit_outcomes(xml) if xml.is_file() else {}
    part.figures["outcomes"] = outcomes
    for word in ("passed", "failed", "skipped"):
        part.figures[word] = sum(outcome.startswith(word) for outcome in outcomes.values())
    if result.rc != 0 or not outcomes:
        raise PartFailed(f"pytest exited with {result.rc}: {part.figures['failed']} failed")
    if not part.check.dry_run and part.figures["skipped"]:
        raise PartFailed(f"{part.figures['skipped']} GPU test(s) skipped on the GPU machine")


def throughput(part: Part) -> None:
    sizes = part.check.sizes
    part.figures["runs"] = {}
    failed = []
    runs = sizes.throughput
    for (model, batch, scenarios, _), fraction in zip(runs, fractions([run[3] for run in runs]), strict=True):
        name = f"{model}/{scenarios}"
        out = part.check.work / f"throughput-{model}-{scenarios.replace(',', '+')}.json"
        command = part.python("benchmarks/train_throughput.py", "--model", model, "--batch-size", str(batch),
                              "--scenarios", scenarios, *sizes.gpu_flags, *sizes.throughput_args,
                              *sizes.threads, "--json", str(out))  # fmt: skip
        if part.run(command, fraction, required=False).rc != 0:
            failed.append(name)
        if out.is_file():  # rewritten after every run: a run cut short keeps what it measured
            measured = json.loads(out.read_text())
            part.figures["device"] = measured["device"]
            rates = measured["bf16_flops_per_s"]
            part.figures["bf16_tflops"] = {k: None if v is None else v / 1e12 for k, v in rates.items()}
            part.figures["runs"][name] = measured["results"]
    if failed:
        raise PartFailed(f"not complete: {', '.join(failed)} (the figures measured so far are kept)")


def fsdp(part: Part) -> None:
    work, threads = part.check.work / "fsdp", part.check.sizes.threads
    one, sharded = work / "accelerate", work / "torchrun"
    accelerate = part.python("-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines",
                             "1", "--mixed_precision", "no", "--dynamo_backend", "no")  # fmt: skip
    torchrun = part.python("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1")
    launches = [
        (accelerate, one, ["--max-steps", "4"], "has no effect on one process"),
        (torchrun, sharded, ["--max-steps", "2"], "weights sharded over 1 process(es)"),
        (torchrun, sharded, ["--max-steps", "4", "--resume"], "(step 2)"),
    ]
    for number, (launcher, out, extra, expected) in enumerate(launches):
        command = [*launcher, part.check.runner, "pretrain", *FSDP_RUN, *threads, *extra, "--out", str(out)]
        result = part.run(command, fraction=1 / (len(launches) + 1 - number))
        if expected not in result.output:
            raise PartFailed(f"{out.name}: its output lacks {expected!r}")
    compared = part.run(part.python("-c", COMPARE_RUNS, str(one), str(sharded), "4"))
    part.figures.update(json.loads(compared.output.splitlines()[-1]))
    if (
        part.figures["max_weight_diff"] > 1e-5
        or part.figures["weights_missing"]
        or not part.figures["rows_agree"]
    ):
        raise PartFailed("the sharded run, cut and resumed, differs from the unsharded one")


def set_slice(part: Part) -> None:
    sys.path.insert(0, str(REPO / "src"))  # this checkout's, as the children's (synthpre is installed)
    from synthpre.train.metrics import read_metrics  # a last row cut short by the time limit is left out

    sizes = part.check.sizes
    out = part.check.work / "set"
    command = part.synthpre("pretrain", "--task", "set", *sizes.gpu_flags, *sizes.set_args, *sizes.threads,
                            "--no-progress", "--out", str(out))  # fmt: skip
    result = part.run(command, required=False)
    rows = [
        row for row in read_metrics(out) if row["split"] == "train" and row["step"] >= sizes.set_skip_steps
    ]
    if len(rows) >= 2:  # timed from the first row after the warm-up: compile and recompiles excluded
        first, last = rows[0], rows[-1]
        seconds = last["elapsed_s"] - first["elapsed_s"]
        part.figures.update({
            "timed_steps": [first["step"], last["step"]],
            "steps_per_s": (last["step"] - first["step"]) / seconds,
            "tokens_per_s": (last["tokens"] - first["tokens"]) / seconds,
        })  # fmt: skip
        part.figures["projected_80k_steps_h"] = APP_A_STEPS / part.figures["steps_per_s"] / 3600
    if result.rc != 0 or len(rows) < 2:
        raise PartFailed(f"exited with {result.rc} after {len(rows)} timed log rows (figures: so far)")


def goals(report: dict[str, Any]) -> dict[str, Any]:
    """Each goal of the issue: its value (None where not measured) and whether it is met."""
    runs = report["parts"].get("throughput", {}).get("figures", {}).get("runs", {})

    def row(model: str, scenario: str, trainer: str) -> dict | None:
        rows = runs.get(f"{model}/{scenario}", [])
        return next((r for r in rows if r["scenario"] == scenario and r["trainer"] == trainer), None)

    values: dict[str, float | None] = {}
    for model in ("t5-small", "t5-base"):
        fixed, synthetic = row(model, "fixed", "engine"), row(model, "synthetic", "hf")
        values[f"mfu:{model}"] = fixed and fixed["mfu_datasheet"]
        values[f"ratio:{model}"] = synthetic and synthetic["ratio"]
    result = {}
    for goal, (figure, threshold) in GOALS.items():
        value = values[figure]
        result[goal] = {"value": value, "met": None if value is None else value >= threshold}
    hours = report["parts"].get("set", {}).get("figures", {}).get("projected_80k_steps_h")
    result[f"80K Set steps of t5-small <= {SET_HOURS_GOAL:g} h"] = {
        "value": hours, "met": None if hours is None else hours <= SET_HOURS_GOAL,
    }  # fmt: skip
    return result


def run_part(check: Check, name: str, body: Callable[[Part], None], shares: dict[str, float]) -> None:
    """One part within its share of the time left; whatever happens, recorded, and the report written."""
    names = list(shares)
    left = names[names.index(name) :]
    seconds = max(check.remaining(), 0.0) * shares[name] / sum(shares[n] for n in left)
    record: dict[str, Any] = {"status": "ok", "limit_s": round(seconds, 1), "commands": []}
    check.report["parts"][name] = record
    check.say(f"\n======== {name} (at most {seconds:.0f} s; {check.remaining():.0f} s left in all) ========")
    start = time.monotonic()
    part = Part(check, record, start + seconds)
    try:
        if seconds < 1:
            raise PartFailed("no time left")
        body(part)
    except PartFailed as failure:
        record["status"] = "timed_out" if record["status"] == "timed_out" else "failed"
        record["error"] = str(failure)
    except Exception as error:  # a bug of this script or an unexpected output: the next part still runs
        record["status"], record["error"] = "failed", f"{type(error).__name__}: {error}"
    record["figures"] = part.figures
    record["seconds"] = round(time.monotonic() - start, 1)
    check.say(f"======== {name}: {record['status']}" + (f" ({record['error']})" if "error" in record else ""))
    check.write_report()


# ---- wheels for a machine without a registry


def download_command(directory: Path, requirement: str, python_version: str) -> list[str]:
    """``pip download`` of ``requirement``'s wheel alone, for CPython ``python_version`` on x86-64 Linux."""
    platforms = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                 "manylinux2014_x86_64", "manylinux1_x86_64")  # fmt: skip
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d",
               str(directory), "--python-version", python_version, "--implementation", "cp"]  # fmt: skip
    for platform in platforms:
        command += ["--platform", platform]
    return [*command, requirement]


def pinned(name: str) -> str:
    """``name==version`` of this environment (where the tests pass), else pyproject's requirement."""
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return next((r for r in project_requirements() if base_name(r) == base_name(name)), name)


def default_wheel_names() -> list[str]:
    """pyproject's requirements but the GPU machine's own torch and accelerate, and setuptools (to
    build the checkout)."""
    return [*(base_name(r) for r in project_requirements() if base_name(r) not in IMAGE_OWN), "setuptools"]


def fetch_wheels(directory: Path, names: list[str], python_version: str) -> int:
    """Each named package's wheel (default: ``default_wheel_names``), pinned to this environment's
    version, without dependencies; a package published as source only is built into a wheel here
    (pure Python ones install anywhere)."""
    directory.mkdir(parents=True, exist_ok=True)
    names = names or default_wheel_names()
    failed = []
    for name in names:
        requirement = pinned(name)
        if subprocess.run(download_command(directory, requirement, python_version)).returncode == 0:
            continue
        build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(directory), requirement]
        if subprocess.run(build).returncode != 0:
            failed.append(requirement)
    size = sum(p.stat().st_size for p in directory.glob("*.whl")) / 2**20
    print(f"{directory}: {len(list(directory.glob('*.whl')))} wheels, {size:.1f} MiB" +
          (f"; FAILED: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


# ---- the whole check


def child_environment(dry_run: bool) -> dict[str, str]:
    env = {"NCCL_DEBUG": "WARN", **os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    if dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is the CPU path, on any machine
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="folder for gpu_check.log and gpu_check.json")
    parser.add_argument("--wheels", type=Path, default=None, help="folder of wheels to install first")
    parser.add_argument("--dry-run", action="store_true", help="tiny, on the CPU, installing nothing")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all the parts")
    parser.add_argument("--parts", default=",".join(SHARES), help=f"a subset of {','.join(SHARES)}")
    parser.add_argument(
        "--work", type=Path, default=None, help="scratch folder (kept; default: a temporary one)"
    )
    parser.add_argument(
        "--fetch-wheels",
        type=Path,
        default=None,
        metavar="DIR",
        help="instead: download wheels of NAMES (default: pyproject's but torch, accelerate)",
    )
    parser.add_argument("--python-version", default="3.12", help="of the wheels --fetch-wheels downloads")
    parser.add_argument("names", nargs="*", help="packages for --fetch-wheels")
    args = parser.parse_args(argv)  # fmt: skip
    if args.fetch_wheels is not None:
        return fetch_wheels(args.fetch_wheels, args.names, args.python_version)
    chosen = args.parts.split(",")
    if args.out is None or args.names or not set(chosen) <= set(SHARES):
        parser.error(
            f"--out OUT is required, NAMES go with --fetch-wheels, --parts is a subset of {list(SHARES)}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "synthpre_main.py").write_text(RUNNER)
    bodies: dict[str, Callable[[Part], None]] = {
        "install": lambda part: install(part, args.wheels), "tests": tests, "throughput": throughput,
        "fsdp": fsdp, "set": set_slice,
    }  # fmt: skip
    shares = {name: SHARES[name] for name in SHARES if name in chosen}
    with open(args.out / LOG, "w", encoding="utf-8") as log:
        check = Check(args.out, work, args.dry_run, args.budget, child_environment(args.dry_run), log)
        check.report.update({"dry_run": args.dry_run, "budget_s": args.budget, "parts": {},
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})  # fmt: skip
        check.say(
            f"gpu_check{' --dry-run' if args.dry_run else ''}: {', '.join(shares)} in {args.budget:.0f} s"
        )
        for name in shares:
            run_part(check, name, bodies[name], shares)
        check.report["goals"] = goals(check.report)
        if args.dry_run:
            check.report["goals_note"] = "dry run: tiny models on a CPU, not the goals' settings"
        check.write_report()
        statuses = {name: check.report["parts"][name]["status"] for name in shares}
        check.say(f"\nparts: {statuses}\ngoals: {json.dumps(check.report['goals'], indent=1)}")
        check.say(f"figures: {args.out / REPORT}; log: {args.out / LOG}; {check.report['elapsed_s']} s")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(status == "ok" for status in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
