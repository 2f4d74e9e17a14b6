"""``mlx predict REPO/NAME[:VERSION] INPUT OUTPUT``: batch inference over a file.

The rows of a CSV, Parquet or NPY file go through the model version's own request checks,
preprocessing and model call (:class:`~mlx.deploy.runtime.ModelVersion`), chunk by chunk, so a
row gets the prediction, or the error message, that ``mlx serve`` would give it. OUTPUT is
written beside itself under a temporary name and renamed into place, so a failure never leaves
a half-written file. With ``--ray`` the same per-chunk function runs in Ray Data actors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlx.deploy.runtime import NAN_POLICIES, RUNTIMES, InputTensor, ModelVersion, RequestError
from mlx.errors import MlxError, UsageError

DESCRIPTION = """\
Batch inference: predict every row of INPUT with a model version of a repository (the one
`mlx serve` serves: same checks, preprocessing and model) and write the predictions to OUTPUT.

MODEL is REPO/NAME (the latest version) or REPO/NAME:VERSION, e.g. outputs/models/digits_cnn:1.
INPUT is .csv or .parquet (a table model's raw columns, found by name; other columns are
ignored) or .npy (images (N, C, H, W) or (N, C*H*W); a table's columns (N, n) in the model's
order). OUTPUT is .csv or .parquet (columns: the --keep columns, then label and prob_<class>
for a classifier, y for a regression; y_<class> for a classifier's raw outputs) or .npy (one
numeric output, y by default). It appears whole or not at all.

With --ray the job runs on Ray Data (a local Ray instance, or --ray-address) and OUTPUT is a
folder of .parquet or .csv part files named by Ray, with a `row` column (the input row, from 0).
"""

EPILOG = """\
examples:
  mlx predict outputs/models/digits_cnn images.npy predictions.parquet
  mlx predict outputs/models/germancredit_mlp:2 customers.csv scores.csv --keep id
  mlx predict outputs/models/digits_cnn images.npy logits.npy --outputs y
  mlx predict outputs/models/digits_cnn big.npy preds.parquet --ray --ray-workers 8
"""

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}
# OIP datatypes of the arrays a chunk becomes (raw_rows' float32 images, float64 columns)
IMAGE_TYPE, NUMBER_TYPE = "FP32", "FP64"
ROW = "row"


class PredictError(MlxError):
    """Input that cannot be predicted: a missing column, a wrong shape, a bad value in a row..."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlx predict",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="REPO/NAME or REPO/NAME:VERSION")
    p.add_argument("input", metavar="INPUT", help="a .csv, .parquet or .npy file")
    p.add_argument("output", metavar="OUTPUT", help="a .csv, .parquet or .npy file to write")
    p.add_argument(
        "--outputs",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="which of the model's outputs to write: y, probabilities, label (default: label "
        "and probabilities for a classifier, y for a regression; y for an .npy OUTPUT)",
    )
    p.add_argument(
        "--keep",
        nargs="+",
        action="extend",
        default=[],
        metavar="COLUMN",
        help="input columns to copy into OUTPUT before the predictions (an id, say)",
    )
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=4096,
        metavar="N",
        help="rows read and predicted at a time (default: 4096)",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads of one model call (default: all CPUs; 1 per worker with --ray)",
    )
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="run model.onnx on ONNX Runtime or model.pt on torch (default: onnx)",
    )
    p.add_argument(
        "--nan",
        choices=NAN_POLICIES,
        default="reject",
        help="a missing number: refuse the row (default), or fill a table's column as training "
        "did (the same as mlx serve --nan)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray", action="store_true", help="run on Ray Data; OUTPUT is a folder")
    p.add_argument(
        "--ray-workers",
        type=int,
        default=2,
        metavar="N",
        help="Ray actors, each holding one loaded model (default: 2)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="join this Ray cluster (mlx must be installed on its nodes) instead of starting "
        "a local instance",
    )
    return p


@dataclass(frozen=True)
class Job:
    """Everything a chunk's prediction needs, as plain data (Ray ships it to its actors).

    Attributes:
        folder: the model version folder.
        runtime: ``onnx``, ``torchscript`` or None (ONNX when the folder has it).
        threads: CPU threads of one model call.
        nan: the request checks' NaN policy.
        kind: the signature's preprocessing kind: ``image``, ``table`` or ``columns``.
        input: the input file and its format (``csv``, ``parquet``, ``npy``).
        numeric: the raw numeric columns the model reads (tables), in the model's order.
        categorical: the raw categorical columns (``columns`` models).
        rename: the file's column name -> the model's (a CSV header's names are stripped).
        image_shape: ``(C, H, W)`` of an image model.
        keep: input columns copied to OUTPUT.
        outputs: the model outputs written.
        output: OUTPUT and its format.
        class_names: the classes of a classifier.
        chunk_rows: rows per chunk.
    """

    folder: Path
    runtime: str | None
    threads: int
    nan: str
    kind: str
    input: Path
    input_format: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    rename: dict[str, str]
    image_shape: tuple[int, ...]
    keep: tuple[str, ...]
    outputs: tuple[str, ...]
    output: Path
    output_format: str
    class_names: tuple[str, ...] | None
    chunk_rows: int

    @property
    def columns(self) -> list[str]:
        """The file's columns that are read, by their names in the file."""
        back = {v: k for k, v in self.rename.items()}
        wanted = [*self.keep, *self.numeric, *self.categorical]
        return [back.get(c, c) for c in dict.fromkeys(wanted)]


def main(argv: list[str]) -> int:
    """Entry point of ``mlx predict``; returns the exit status."""
    args = parser().parse_args(argv)
    job, model, total = plan(args)
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    show = not args.no_progress and sys.stderr.isatty()
    t0 = time.perf_counter()
    if args.ray:
        rows = run_ray(job, workers=args.ray_workers, address=args.ray_address, progress=show)
    else:
        rows = run_local(job, model, total, console if show else None)
    seconds = time.perf_counter() - t0
    rate = rows / seconds if seconds > 0 else float("inf")
    print(f"predict: {rows} rows in {seconds:.2f} s ({rate:,.0f} rows/s) -> {job.output}")
    return 0


# -- the job, checked before any work -------------------------------------------------------------


def plan(args: argparse.Namespace) -> tuple[Job, ModelVersion, int | None]:
    """The job the command line asks for, its model loaded and its input's header or shape
    checked against the model's signature, and the input's row count when known.

    Raises:
        UsageError: an unknown file type, a missing INPUT, an existing OUTPUT, a bad option.
        PredictError: no such model or version, missing columns, a wrong array shape...
        ModelLoadError: the version folder cannot be loaded.
    """
    source = Path(args.input).expanduser()
    target = Path(args.output).expanduser()
    in_format = _format(source, "INPUT")
    out_format = _format(target, "OUTPUT")
    if not source.is_file():
        what = "is a folder, not a file" if source.is_dir() else "does not exist"
        raise UsageError(f"INPUT {source} {what}.")
    if args.chunk_rows < 1 or (args.threads is not None and args.threads < 1):
        raise UsageError("--chunk-rows and --threads take a positive integer.")
    if args.ray_workers < 1:
        raise UsageError("--ray-workers takes a positive integer.")
    if args.ray and out_format == "npy":
        raise UsageError(
            "with --ray OUTPUT is a folder of .parquet or .csv part files written by Ray: "
            f"give it a .parquet or .csv name, not {target.name}."
        )
    if (target.exists() or target.is_symlink()) and not args.overwrite:
        raise UsageError(f"OUTPUT {target} exists; pass --overwrite to replace it.")
    if target.is_dir() and not args.ray:
        raise UsageError(f"OUTPUT {target} is a folder; give a file name (a folder is --ray's).")
    if target.resolve() == source.resolve():
        raise UsageError("OUTPUT is INPUT; write the predictions to another file.")
    folder = version_folder(args.model)
    threads = args.threads or (1 if args.ray else max(1, os.cpu_count() or 1))
    model = ModelVersion(folder, runtime=args.runtime, threads=threads)
    sig = model.sig
    pre = sig.preprocessing
    outputs = _outputs(model, args.outputs, out_format)
    keep = tuple(dict.fromkeys(args.keep))
    if keep and (in_format == "npy" or out_format == "npy"):
        raise UsageError(
            "--keep copies columns of a table: INPUT and OUTPUT must be .csv or .parquet."
        )
    clash = set(keep) & {*_output_columns(outputs, sig.class_names, model), ROW}
    if clash:
        raise UsageError(
            f"--keep {', '.join(sorted(clash))}: OUTPUT has a prediction column of that name."
        )
    job = Job(
        folder=folder,
        runtime=args.runtime,
        threads=threads,
        nan=args.nan,
        kind=pre["kind"],
        input=source,
        input_format=in_format,
        numeric=tuple(c["name"] for c in pre.get("numeric", [])),
        categorical=tuple(c["name"] for c in pre.get("categorical", [])),
        rename={},
        image_shape=tuple(sig.model_shape[1:]) if pre["kind"] == "image" else (),
        keep=keep,
        outputs=outputs,
        output=target,
        output_format=out_format,
        class_names=sig.class_names,
        chunk_rows=args.chunk_rows,
    )
    if in_format == "npy":
        total = _check_npy(job, model)
    else:
        job, total = _check_table(job, model)
    return job, model, total


def _format(path: Path, what: str) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"{what} {path}: cannot tell the format from '{path.suffix or 'no extension'}'; "
            f"name a {', '.join(FORMATS)} file."
        )
    return fmt


def version_folder(spec: str) -> Path:
    """The folder of ``REPO/NAME[:VERSION]`` (the latest version when none is given).

    Raises:
        PredictError: the repository, model or version does not exist (the message lists
            what does).
    """
    from mlx.deploy.repository import models, resolve, versions

    repo, name, version = resolve(spec)
    if not repo.is_dir():
        raise PredictError(
            f"MODEL {spec}: the repository {repo} does not exist; give REPO/NAME[:VERSION], "
            "e.g. outputs/models/digits_cnn (written by mlx run deployment=datacenter)."
        )
    found = versions(repo, name)
    if not found:
        held = models(repo)
        listing = ", ".join(f"{n} ({', '.join(map(str, vs))})" for n, vs in held.items())
        from mlx.errors import did_you_mean

        raise PredictError(
            f"MODEL {spec}: {repo} holds no model {name!r}; it holds "
            f"{listing or 'no models'}.{did_you_mean(name, held)}"
        )
    if version is None:
        version = found[-1]
    elif version not in found:
        raise PredictError(
            f"MODEL {spec}: model {name} in {repo} has no version {version}; its versions are "
            f"{', '.join(map(str, found))}."
        )
    return repo / name / str(version)


def _outputs(model: ModelVersion, asked: list[str] | None, out_format: str) -> tuple[str, ...]:
    have = model.output_names
    if asked is None:
        if out_format == "npy" or "label" not in have:
            return ("y",)
        return ("label", "probabilities")
    asked = list(dict.fromkeys(asked))
    unknown = [n for n in asked if n not in have]
    if unknown:
        raise UsageError(
            f"--outputs {', '.join(unknown)}: model {model.name} has the outputs {', '.join(have)}."
        )
    if out_format == "npy" and (len(asked) != 1 or asked[0] == "label"):
        raise UsageError(
            "an .npy OUTPUT holds one numeric array: --outputs y or --outputs probabilities "
            f"(not {' '.join(asked)}); write labels to .csv or .parquet."
        )
    return tuple(asked)


def _check_npy(job: Job, model: ModelVersion) -> int:
    """The row count of an NPY input whose shape and type the model takes."""
    try:
        array = np.load(job.input, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise PredictError(
            f"INPUT {job.input} is not a readable .npy array of numbers ({e})."
        ) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf":
        kind = getattr(array, "dtype", type(array).__name__)
        raise PredictError(f"INPUT {job.input} holds {kind} values; the model takes numbers.")
    if job.kind == "columns":
        raise PredictError(
            f"model {model.name} takes named columns, some of them categorical "
            f"({', '.join(job.categorical)}): give INPUT as .csv or .parquet."
        )
    n = array.shape[0] if array.ndim else 0
    if job.kind == "image":
        c, h, w = job.image_shape
        ok = array.shape[1:] in ((c, h, w), (c * h * w,))
        takes = f"(N, {c}, {h}, {w}) or (N, {c * h * w})"
    else:
        ok = array.ndim == 2 and array.shape[1] == len(job.numeric)
        takes = f"(N, {len(job.numeric)}) (its columns {_listing(list(job.numeric))}, in order)"
    if not ok or array.ndim < 2 or n < 1:
        raise PredictError(
            f"INPUT {job.input} holds an array of shape {tuple(array.shape)}; model "
            f"{model.name} takes {takes} with N >= 1."
        )
    return int(n)


def _check_table(job: Job, model: ModelVersion) -> tuple[Job, int | None]:
    """The job with the file's column names mapped, once its header holds every column the
    model reads (and, for Parquet, numbers in its numeric ones)."""
    from dataclasses import replace

    if job.kind == "image":
        c, h, w = job.image_shape
        raise PredictError(
            f"model {model.name} takes images ({c}, {h}, {w}): give INPUT as an .npy array "
            f"(N, {c}, {h}, {w}) or (N, {c * h * w})."
        )
    total = None
    types: dict[str, Any] = {}
    try:
        if job.input_format == "csv":
            import pandas as pd

            header = list(pd.read_csv(job.input, nrows=0, encoding="utf-8-sig").columns)
        else:
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(job.input)
            header = list(pf.schema_arrow.names)
            types = {f.name: f.type for f in pf.schema_arrow}
            total = pf.metadata.num_rows
    except Exception as e:  # a file pandas or pyarrow cannot read: its own words
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PredictError(
            f"INPUT {job.input} cannot be read as {job.input_format} ({first})."
        ) from None
    names = {str(c).strip(): str(c) for c in header}
    rename = {raw: name for name, raw in names.items() if raw != name}
    wanted = [*job.numeric, *job.categorical]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise PredictError(
            f"INPUT {job.input} lacks {len(missing)} of the {len(wanted)} columns model "
            f"{model.name} reads: {_listing(missing)}."
        )
    absent = [c for c in job.keep if c not in names]
    if absent:
        raise PredictError(
            f"--keep {', '.join(absent)}: INPUT {job.input} has no such column (it has "
            f"{_listing(list(names))})."
        )
    if types:
        import pyarrow.types as pat

        text = [
            c
            for c in job.numeric
            if not (
                pat.is_integer(t := types[names[c]])
                or pat.is_floating(t)
                or pat.is_boolean(t)
                or pat.is_decimal(t)
                or pat.is_null(t)
            )
        ]
        if text:
            raise PredictError(
                f"INPUT {job.input}: the column(s) {', '.join(text)} hold "
                f"{', '.join(str(types[names[c]]) for c in text)}, not numbers; model "
                f"{model.name} reads them as numbers."
            )
    return replace(job, rename=rename), total


def _listing(names: list[str], most: int = 6) -> str:
    """``a, b, c`` or ``a, b, c, ... (40 in all)``."""
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:most])}, ... ({len(names)} in all)"


def _output_columns(
    outputs: tuple[str, ...], class_names: tuple[str, ...] | None, model: ModelVersion
) -> list[str]:
    width = next(t.shape[1] for t in model.sig.outputs if t.name == "y")
    return list(_column_names(outputs, class_names, width))


def _column_names(
    outputs: tuple[str, ...], class_names: tuple[str, ...] | None, width: int
) -> Iterator[str]:
    for name in outputs:
        if name == "label":
            yield "label"
        elif name == "probabilities":
            yield from (f"prob_{c}" for c in class_names or range(width))
        elif class_names:
            yield from (f"y_{c}" for c in class_names)
        else:
            yield from (["y"] if width == 1 else [f"y_{i}" for i in range(width)])


# -- one chunk: the function the local path and Ray's actors share --------------------------------


def predict_chunk(
    model: ModelVersion, job: Job, chunk: Any, start: int | None
) -> dict[str, np.ndarray]:
    """The named outputs of one chunk (a DataFrame of raw columns, or an NPY slice), through
    the model's request checks like one request to ``mlx serve``.

    Args:
        model: the loaded model version.
        job: the job.
        chunk: the chunk's rows.
        start: the index of its first row in INPUT (None under Ray, where it is not known).

    Raises:
        PredictError: a value in the chunk that the server would refuse; the message names the
            rows, the first bad one and the server's reason.
    """
    inputs = _inputs(job, chunk, start)
    tensors = [
        InputTensor(
            spec.name,
            _datatype(spec.datatype, job.kind),
            inputs[spec.name].shape,
            inputs[spec.name],
        )
        for spec in model.sig.inputs
    ]
    try:
        checked, _ = model.check(tensors, nan=job.nan)
    except RequestError as e:
        rows = len(chunk)
        bad = _first_bad_row(model, job, tensors, rows)
        raise PredictError(f"{_where(job, start, rows, bad)}: {e.message}") from None
    return model.outputs(model.forward(model.encode(checked)), list(job.outputs))


def output_frame(job: Job, outs: dict[str, np.ndarray], chunk: Any) -> Any:
    """A chunk's OUTPUT columns: the --keep columns, then the predictions."""
    import pandas as pd

    columns: dict[str, Any] = {}
    if job.keep:
        frame = chunk.rename(columns=job.rename) if job.rename else chunk
        for c in job.keep:
            columns[c] = frame[c].to_numpy()
    for name in job.outputs:
        values = outs[name]
        if values.ndim == 1:
            columns[name] = values
            continue
        labels = _column_names((name,), job.class_names, values.shape[1])
        for i, label in enumerate(labels):
            columns[label] = values[:, i]
    return pd.DataFrame(columns)


def _inputs(job: Job, chunk: Any, start: int | None) -> dict[str, np.ndarray]:
    """A chunk as the raw inputs a client sends (numbers checked for text)."""
    from mlx.deploy.signature import raw_rows

    rows = len(chunk)
    if job.kind == "image":
        return {"x": np.asarray(chunk, dtype=np.float32).reshape(rows, *job.image_shape)}
    if isinstance(chunk, np.ndarray):  # a table's columns from an NPY
        return {"x": np.asarray(chunk, dtype=np.float64)}
    frame = chunk.rename(columns=job.rename) if job.rename else chunk
    frame = frame[[*job.numeric, *job.categorical]].copy()
    for c in job.numeric:
        frame[c] = _numbers(frame[c], c, job, start)
    pre = {"kind": job.kind, "numeric": [{"name": c} for c in job.numeric]}
    pre["categorical"] = [{"name": c} for c in job.categorical]
    return raw_rows(pre, frame)


def _numbers(series: Any, column: str, job: Job, start: int | None) -> np.ndarray:
    """A numeric column as float64, or a PredictError naming the first value that is not a
    number. Text (Ray reads a CSV's numbers as text) is parsed by pyarrow, correctly rounded
    like pandas' round-trip parser of the local path."""
    import pandas as pd
    import pyarrow as pa

    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        text = pa.array(series.astype(object), type=pa.string(), from_pandas=True)
        return text.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    present = series.notna().to_numpy()
    for i, (value, ok) in enumerate(zip(series, present, strict=True)):
        if ok and not _is_number(value):
            raise PredictError(
                f"{_where(job, start, len(series), i)}: the column {column} holds "
                f"{str(value)!r}, not a number."
            )
    return np.array([float(v) if ok else np.nan for v, ok in zip(series, present, strict=True)])


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _datatype(declared: str, kind: str) -> str:
    if declared == "BYTES":
        return "BYTES"
    return IMAGE_TYPE if kind == "image" else NUMBER_TYPE


def _first_bad_row(
    model: ModelVersion, job: Job, tensors: list[InputTensor], rows: int
) -> int | None:
    """The first row the request checks refuse on its own (None when only the whole chunk
    is refused)."""
    for i in range(rows):
        one = [
            InputTensor(t.name, t.datatype, (1, *t.shape[1:]), t.data[i : i + 1]) for t in tensors
        ]
        try:
            model.check(one, nan=job.nan)
        except RequestError:
            return i
    return None


def _where(job: Job, start: int | None, rows: int, bad: int | None) -> str:
    """Where in INPUT a chunk's problem is: data rows counted from 1."""
    if start is None:
        at = f", its row {bad + 1}" if bad is not None else ""
        return f"INPUT {job.input}, a batch of {rows} rows under --ray{at}"
    at = f", first at row {start + bad + 1}" if bad is not None else ""
    return f"INPUT {job.input}, rows {start + 1}-{start + rows}{at}"


# -- the local path ---------------------------------------------------------------------------------


def chunks(job: Job) -> Iterator[tuple[int, Any]]:
    """(first row, rows) of INPUT, ``job.chunk_rows`` at a time."""
    n = job.chunk_rows
    if job.input_format == "npy":
        array = np.load(job.input, mmap_mode="r", allow_pickle=False)
        for start in range(0, array.shape[0], n):
            yield start, np.asarray(array[start : start + n])
        return
    start = 0
    if job.input_format == "csv":
        import pandas as pd

        back = {v: k for k, v in job.rename.items()}
        reader = pd.read_csv(
            job.input,
            chunksize=n,
            usecols=job.columns,
            dtype={back.get(c, c): str for c in job.categorical},
            encoding="utf-8-sig",
            # correctly rounded, like pyarrow's parser under --ray and JSON's in mlx serve
            float_precision="round_trip",
        )
        with reader:
            for frame in reader:
                yield start, frame.reset_index(drop=True)
                start += len(frame)
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(job.input).iter_batches(batch_size=n, columns=job.columns):
        yield start, batch.to_pandas()
        start += batch.num_rows


def run_local(job: Job, model: ModelVersion, total: int | None, console: Any) -> int:
    """Predict INPUT chunk by chunk into OUTPUT (atomically); returns the row count."""
    writer = _Writer(job)
    progress = _progress(console, total)
    rows = 0
    try:
        with progress:
            task = progress.add_task("predict", total=total)
            for start, chunk in chunks(job):
                outs = predict_chunk(model, job, chunk, start)
                if job.output_format == "npy":
                    writer.write_array(outs[job.outputs[0]])
                else:
                    writer.write_frame(output_frame(job, outs, chunk))
                rows += len(chunk)
                progress.update(task, advance=len(chunk))
        if rows == 0:
            raise PredictError(f"INPUT {job.input} holds no rows.")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return rows


def _progress(console: Any, total: int | None) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]predict[/bold]"),
        BarColumn(),
        MofNCompleteColumn() if total else TextColumn("{task.completed:,.0f} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
        transient=True,
    )


class _Writer:
    """OUTPUT written to a temporary file beside it, renamed into place by :meth:`commit`."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.path = job.output
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _temporary(self.path)
        self.raw: Any = None  # .npy: the rows' bytes, before the header that counts them
        self.parquet: Any = None
        self.schema: Any = None
        self.csv: Any = None
        self.shape: tuple[int, ...] | None = None
        self.dtype: Any = None

    def write_frame(self, frame: Any) -> None:
        if self.job.output_format == "csv":
            if self.csv is None:
                self.csv = self.tmp.open("w", newline="", encoding="utf-8")
                frame.to_csv(self.csv, index=False)
            else:
                frame.to_csv(self.csv, index=False, header=False)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.parquet is None:
            self.schema = table.schema
            self.parquet = pq.ParquetWriter(self.tmp, self.schema)
        elif table.schema != self.schema:
            try:
                table = table.cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
                raise PredictError(
                    f"a --keep column changes type between chunks of INPUT {self.job.input} "
                    f"({e}); write a .csv OUTPUT, or fix the column's type."
                ) from None
        self.parquet.write_table(table)

    def write_array(self, values: np.ndarray) -> None:
        if self.raw is None:
            self.raw = _temporary(self.path, ".rows").open("wb")
            self.shape, self.dtype = values.shape[1:], values.dtype
        self.raw.write(np.ascontiguousarray(values, dtype=self.dtype).tobytes())

    def commit(self) -> None:
        if self.csv is not None:
            self.csv.close()
        if self.parquet is not None:
            self.parquet.close()
        if self.raw is not None:
            self.raw.close()
            raw = Path(self.raw.name)
            rows = raw.stat().st_size // (self.dtype.itemsize * int(np.prod(self.shape)))
            header = {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": (rows, *self.shape),
            }
            with self.tmp.open("wb") as out, raw.open("rb") as src:
                np.lib.format.write_array_header_1_0(out, header)
                shutil.copyfileobj(src, out, 1 << 22)
            raw.unlink()
        _replace(self.tmp, self.path)

    def abort(self) -> None:
        for handle in (self.csv, self.parquet, self.raw):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
        if self.raw is not None:
            Path(self.raw.name).unlink(missing_ok=True)
        self.tmp.unlink(missing_ok=True)


def _temporary(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")


def _replace(tmp: Path, path: Path) -> None:
    """Put ``tmp`` (a file, or Ray's folder) at ``path``, replacing what --overwrite allowed."""
    if path.is_dir() and not path.is_symlink():
        old = _temporary(path, ".old")
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    elif tmp.is_dir() and path.exists():
        path.unlink()
        os.rename(tmp, path)
    else:
        os.replace(tmp, path)


# -- the Ray path -------------------------------------------------------------------------------------


class RayPredictor:
    """A Ray Data actor: loads the model version once, then predicts batches with
    :func:`predict_chunk` like the local path."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.model = ModelVersion(job.folder, runtime=job.runtime, threads=job.threads)

    def __call__(self, batch: Any) -> Any:
        chunk = batch["data"] if self.job.input_format == "npy" else batch
        outs = predict_chunk(self.model, self.job, chunk, None)
        return output_frame(self.job, outs, chunk)


def run_ray(job: Job, *, workers: int, address: str | None, progress: bool) -> int:
    """Predict INPUT on Ray Data into the folder OUTPUT (atomically); returns the row count.

    Batches keep INPUT's order (``preserve_order``); the predictions, materialised in that
    order (they are small beside the input), get a ``row`` column (INPUT's row, from 0) from
    their blocks' offsets, so that part files can be matched to input rows.
    """
    import logging

    import ray

    started = False
    if not ray.is_initialized():
        quiet_init = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address:
            try:
                ray.init(address=address, **quiet_init)
            except (ConnectionError, RuntimeError, ValueError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise PredictError(f"--ray-address {address}: cannot join it ({first}).") from None
        else:
            # more logical CPUs than cores when needed: the actors must leave room for reads
            cpus = max(os.cpu_count() or 1, workers * job.threads + 1)
            ray.init(num_cpus=cpus, include_dashboard=False, **quiet_init)
        started = True
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    saved += (ctx.raise_original_map_exception, ctx.print_on_execution_start)
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = progress
    ctx.raise_original_map_exception = True  # a PredictError reaches us as itself
    ctx.print_on_execution_start = False
    quiet = [h for h in logging.getLogger("ray.data").handlers if h.level <= logging.CRITICAL]
    levels = [h.level for h in quiet]
    for h in quiet:  # Ray Data's chatter and tracebacks on stderr; its log file keeps them
        h.setLevel(logging.CRITICAL + 1)
    tmp = _temporary(job.output)
    try:
        preds = _read_ray(job).map_batches(
            RayPredictor,
            fn_constructor_args=(job,),
            batch_size=job.chunk_rows,
            batch_format="numpy" if job.input_format == "npy" else "pandas",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=job.threads,
        )
        blocks = preds.materialize().to_arrow_refs()  # in INPUT's order
        sizes = ray.get([ray.remote(_num_rows).remote(b) for b in blocks])
        rows = int(sum(sizes))
        if rows == 0:
            raise PredictError(f"INPUT {job.input} holds no rows.")
        offsets = np.cumsum([0, *sizes[:-1]])
        number = ray.remote(_numbered)
        result = ray.data.from_arrow_refs(
            [number.remote(b, int(o)) for b, o in zip(blocks, offsets, strict=True)]
        )
        job.output.parent.mkdir(parents=True, exist_ok=True)
        if job.output_format == "csv":
            result.write_csv(str(tmp.resolve()))
        else:
            result.write_parquet(str(tmp.resolve()))
        _replace(tmp, job.output)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        cause = _cause(e, job)
        if cause is not None:
            raise cause from None
        raise
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved[:2]
        ctx.raise_original_map_exception, ctx.print_on_execution_start = saved[2:]
        for h, level in zip(quiet, levels, strict=True):
            h.setLevel(level)
        if started:
            ray.shutdown()
    return rows


def _num_rows(table: Any) -> int:
    return int(table.num_rows)


def _numbered(table: Any, offset: int) -> Any:
    """A block of predictions with its rows' INPUT index first."""
    import pyarrow as pa

    rows = pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64))
    return table.add_column(0, ROW, rows)


def _read_ray(job: Job) -> Any:
    import ray

    path = str(job.input.resolve())
    if job.input_format == "npy":
        return ray.data.read_numpy(path)
    if job.input_format == "parquet":
        return ray.data.read_parquet(path, columns=job.columns)
    import pyarrow as pa
    import pyarrow.csv as pcsv

    back = {v: k for k, v in job.rename.items()}
    types = {back.get(c, c): pa.string() for c in job.categorical}
    # numbers as text, parsed by predict_chunk: a bad value gets the local path's message
    types.update({back.get(c, c): pa.string() for c in job.numeric})
    options = pcsv.ConvertOptions(
        column_types=types, include_columns=job.columns, strings_can_be_null=True
    )
    return ray.data.read_csv(path, convert_options=options)


def _cause(error: BaseException, job: Job) -> MlxError | None:
    """The MlxError an actor raised, out of Ray's wrappers (a fresh one: Ray's copies carry
    the remote traceback in their text), or pyarrow's word on a value it cannot read."""
    import pyarrow as pa

    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(getattr(e, "cause", None), BaseException):  # RayTaskError(...)
            todo.append(e.cause)
            continue
        if isinstance(e, MlxError):
            message = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
            return PredictError(message.split("\n", 1)[0])  # Ray appends its retry notes
        if isinstance(e, pa.ArrowInvalid):
            first = str(e).strip().splitlines()[0]
            return PredictError(f"INPUT {job.input} cannot be read ({first}).")
        todo += [e.__cause__, e.__context__]
    return None
