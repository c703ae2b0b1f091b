"""The ``edanet`` command line: generate, stream, synth, train, evaluate, bench.

Errors a user can act on (bad files, bad values, unwritable paths, missing backends, an input
or model too large for the machine's memory) print one line and exit 2; anything else is a bug
and keeps its traceback."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _corpus_mode(a) -> bool:
    """Several inputs, a folder, a pattern, or -o an existing folder (or ending in a slash)."""
    import glob
    if len(a.audio) > 1 or a.output.endswith(("/", "\\")) or Path(a.output).is_dir():
        return True
    one = a.audio[0]
    return Path(one).is_dir() or (not Path(one).exists() and glob.has_magic(one))


def _generate_corpus(a) -> int:
    from edanet.cli.corpus_job import CorpusJob, run_corpus
    if a.prime:
        raise ValueError("--prime is a recording of one clip's listener: give one audio file (not a corpus)")
    if a.eda_range:
        raise ValueError("--eda-range applies to one legacy model run at a time; generate a corpus with a "
                         "delta model (the default)")
    fmt = None
    if a.plot is not None:
        fmt = a.plot.lower().lstrip(".") or "png"
        if "/" in fmt or "." in fmt:
            raise ValueError(f"--plot {a.plot}: for a corpus the plots go beside each CSV; give no path "
                             "(PNG) or only a format (--plot svg)")
    return run_corpus(CorpusJob(inputs=a.audio, out_dir=a.output, plot_format=fmt, overwrite=a.overwrite,
                                fail_fast=a.fail_fast, model=a.model, backend=a.backend, batch_size=a.batch_size,
                                seed=0 if a.seed is None else a.seed, num_samples=a.num_samples,
                                temperature=a.temperature, initial_eda=a.initial_eda, fmt=a.format,
                                quiet=a.quiet, start_time=_start_time(a.start_time), summary=a.with_median))


def _generate(a) -> int:
    if _corpus_mode(a):
        return _generate_corpus(a)
    from edanet.io import EDACSVWriter

    a.audio = a.audio[0]
    if a.plot == "":
        raise ValueError("--plot needs a file name for one input (e.g. --plot eda.png)")
    # checked before the (long) generation: where the results go
    if _same_file(a.output, a.audio):
        raise ValueError(f"-o {a.output} is the input audio; give another file name for the CSV")
    if a.plot:
        if _same_file(a.plot, a.output) or _same_file(a.plot, a.audio):
            raise ValueError(f"--plot {a.plot} is also the CSV or the input audio; give it its own file name")
        from edanet.evaluation.plot import plot_format
        plot_format(a.plot)
    if a.eda_range:
        from edanet.generation.core import check_eda_range
        check_eda_range(a.eda_range)
    start = _start_time(a.start_time)
    sidecar = _check_output_format(a.output, a.format)

    from tqdm import tqdm

    from edanet.features import audio_info
    from edanet.generation import check_sampling, generate_file, generator_for
    sr, _, frames = audio_info(a.audio)
    check_sampling(a.num_samples, a.temperature)
    gen = generator_for(a.model, a.backend)
    # The file is read, generated and written block by block: the CSV grows as the audio is read
    # (into a temporary file that replaces the output only when the generation is complete).
    bar = tqdm(total=round(frames / sr, 1), desc="edanet generate", unit="s audio", disable=a.quiet)
    try:            # closed on errors too, so an error message starts on its own line
        with EDACSVWriter(a.output, gen.config.eda_sample_rate, a.num_samples, fmt=a.format, start_time=start,
                          summary=a.with_median) as csv:
            def block_done(values, times, seconds):
                csv.write(values)
                bar.update(round(seconds, 1) - bar.n)

            res = generate_file(a.audio, generator=gen, on_block=block_done, temperature=a.temperature,
                                seed=a.seed, num_samples=a.num_samples, initial_eda_us=a.initial_eda,
                                eda_range_us=tuple(a.eda_range) if a.eda_range else None, prime=a.prime)
        from edanet.io import atomic_write, sidecar_fields
        fields = sidecar_fields(a.format, a.num_samples, res.sample_rate, a.with_median, start)
        atomic_write(sidecar, json.dumps({**res.provenance, "input": str(a.audio), **fields}, indent=1) + "\n")
        if a.plot:
            bar.set_postfix_str("plot")
            from edanet.evaluation.plot import plot_generation
            plot_generation(a.audio, res, a.plot)
    finally:
        bar.close()
    print(f"wrote {a.output} and {sidecar.name}: {res.values.shape[1]} EDA samples at {res.sample_rate:g} Hz x "
          f"{res.values.shape[0]} sample(s) (backend {res.backend}, seed {res.seed})"
          + (f"; plot {a.plot}" if a.plot else ""))
    return 0


def _start_time(text: str | None) -> float:
    """``--start-time`` as Unix seconds: a number of seconds, or an ISO 8601 date and time (UTC when
    it names no zone); 0 when not given."""
    if text is None:
        return 0.0
    import datetime
    import math
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--start-time {text!r} is neither Unix seconds nor an ISO 8601 date and time "
                             "(e.g. 1733600000 or 2026-12-07T21:30:00+01:00)") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        value = when.timestamp()
    if not (math.isfinite(value) and 0 <= value < 253402300800):      # before year 10000
        raise ValueError(f"--start-time {text!r} is not a time from 1970 to 9999")
    return value


def _check_output_format(output: str, fmt: str) -> Path:
    """The sidecar an output gets (its provenance), checked before anything is generated: a
    BIDS output must be ``.tsv.gz``, and an existing file where the sidecar goes must be one of
    ours (never a user's file of the same name, e.g. a recording's ground truth)."""
    from edanet.io import is_edanet_sidecar, sidecar_path
    if fmt == "bids" and not output.endswith(".tsv.gz"):
        raise ValueError(f"--format bids writes a BIDS physio file: name it ...physio.tsv.gz (got -o {output}); "
                         "its JSON sidecar goes beside it")
    if fmt != "bids" and output.endswith(".gz"):
        raise ValueError(f"-o {output}: a .gz output is the BIDS form; pass --format bids")
    sidecar = sidecar_path(output)
    if sidecar.exists() and not is_edanet_sidecar(sidecar):
        raise FileExistsError(f"-o {output} writes its provenance to {sidecar}, which exists and edanet did not "
                              "write: move it, or choose another -o")
    return sidecar


#: Bytes per sample of each ``edanet stream --encoding`` (little-endian, interleaved channels).
STREAM_ENCODINGS = {"s16": "<i2", "f32": "<f4"}
#: Most audio ``edanet stream`` reads from stdin at once: short reads keep the output live.
STREAM_READ_SECONDS = 0.05


def _stream(a) -> int:
    import numpy as np

    from edanet.generation import EDAStream
    from edanet.io import eda_columns, eda_rows_text
    for name, role in (("stdin", "reads the raw PCM audio from"), ("stdout", "writes its time,eda lines to")):
        if name in getattr(a, "closed_streams", ()):
            raise ValueError(f"{name} is closed, and edanet stream {role} it: pipe audio in and read the lines out, "
                             "e.g. sox -d -t raw -e signed -b 16 -c 1 -r 16000 - | edanet stream --sample-rate 16000")
    if a.channels < 1:
        raise ValueError(f"--channels must be >= 1, got {a.channels}")
    stream = EDAStream(a.model, a.sample_rate, channels=a.channels, seed=a.seed, num_samples=a.num_samples,
                       backend=a.backend, temperature=a.temperature, initial_eda_us=a.initial_eda, prime=a.prime)
    dtype = np.dtype(STREAM_ENCODINGS[a.encoding])
    frame = dtype.itemsize * a.channels                  # bytes of one sample of every channel
    if not a.quiet:
        print(f"edanet stream: {a.sample_rate:g} Hz {a.encoding} x{a.channels} from stdin -> time,eda lines "
              f"({stream.eda_sample_rate:g} Hz, backend {stream.backend}, seed {stream.seed})", file=sys.stderr)
    out, S = sys.stdout, stream.num_samples

    def emit(values, times):
        # the lines edanet generate --format time writes for the same steps
        first = int(round(times[0] * stream.eda_sample_rate)) if len(times) else 0
        lines = eda_rows_text(values, "time", stream.eda_sample_rate, 0.0, first, a.with_median)
        if lines:
            out.write(lines)
            out.flush()                                   # line by line as the steps complete

    src = sys.stdin.buffer
    read = getattr(src, "read1", src.read)                # what is there, without waiting for a full block
    want = max(frame, int(a.sample_rate * STREAM_READ_SECONDS) * frame)
    pending = b""
    try:
        out.write("time," + ",".join(eda_columns(S, a.with_median)) + "\n")
        out.flush()
        while data := read(want):
            data = pending + data
            whole = len(data) - len(data) % frame
            pending = data[whole:]
            if whole:
                pcm = np.frombuffer(data[:whole], dtype=dtype)
                emit(stream.push(pcm.reshape(-1, a.channels) if a.channels > 1 else pcm), stream.times)
        emit(stream.close(), stream.times)
    except BrokenPipeError:                               # the reader went away (| head): done
        sys.stdout = None
        return 0
    except KeyboardInterrupt:
        return 130
    return 0


#: Most pairs and seconds ``edanet synth`` writes (10 days of audio: beyond, a typo).
MAX_SYNTH_PAIRS = 100_000
MAX_SYNTH_SECONDS = 86_400.0
MAX_SYNTH_SUBJECTS = 10_000


def _check_synth(a) -> None:
    """The synth arguments SynthConfig does not bound: counts, length and sample rates."""
    from edanet.features import check_sample_rate
    from edanet.config import AUDIO_RATES, EDA_RATES
    if not 1 <= a.pairs <= MAX_SYNTH_PAIRS:
        raise ValueError(f"--pairs must lie in [1, {MAX_SYNTH_PAIRS}], got {a.pairs}")
    if a.subjects is not None and not 1 <= a.subjects <= MAX_SYNTH_SUBJECTS:
        raise ValueError(f"--subjects must lie in [1, {MAX_SYNTH_SUBJECTS}], got {a.subjects}")
    if a.subjects is not None and a.pairs * a.subjects > MAX_SYNTH_PAIRS:
        raise ValueError(f"--pairs x --subjects = {a.pairs * a.subjects} recordings, more than {MAX_SYNTH_PAIRS}")
    if not 0 < a.seconds <= MAX_SYNTH_SECONDS:
        raise ValueError(f"--seconds must lie in (0, {MAX_SYNTH_SECONDS:g}] (a day), got {a.seconds:g}")
    check_sample_rate(a.audio_rate, "--audio-rate", AUDIO_RATES)
    check_sample_rate(a.eda_rate, "--eda-rate", EDA_RATES)


def _synth(a) -> int:
    from edanet.synth import SynthConfig, write_cohort, write_dataset
    _check_synth(a)
    cfg = SynthConfig(seconds=a.seconds, audio_sample_rate=a.audio_rate, eda_sample_rate=a.eda_rate)
    if a.subjects is None:
        names = write_dataset(a.out, a.pairs, cfg, a.seed, progress=not a.quiet)
        print(f"wrote {len(names)} pairs to {a.out}")
        return 0
    names = write_cohort(a.out, a.pairs, a.subjects, cfg, a.seed, progress=not a.quiet)
    print(f"wrote {len(names)} clips x {a.subjects} subjects to {a.out} (traits in {Path(a.out) / 'subjects.json'})")
    return 0


def _train(a) -> int:
    import dataclasses

    from edanet.config import EDANetConfig
    from edanet.generation import check_network
    from edanet.training import TRAIN_PRESETS, TrainConfig, train
    cfg = EDANetConfig.from_preset(a.preset, **dict(a.set or []))
    tcfg = TRAIN_PRESETS.get(a.preset, TrainConfig())    # the small recipe is tuned for the small model
    over = {k: v for k, v in [("steps", a.steps), ("batch_size", a.batch_size), ("crop_steps", a.crop_steps),
                              ("lr", a.lr), ("val_every", a.val_every), ("ckpt_every", a.ckpt_every),
                              ("seed", a.seed), ("onset_focus", a.onset_focus),
                              ("val_fraction", a.val_fraction), ("keep_checkpoints", a.keep_checkpoints),
                              ("workers", a.workers)]
            if v is not None}
    tcfg = dataclasses.replace(tcfg, **over)
    init = None
    if a.init:
        from edanet.generation import load_model
        init = load_model(a.init)
        if a.set or a.preset != "small":
            raise ValueError("--init takes the model config from the model it starts from; "
                             "drop --preset/--set")
        cfg = init.config
    check_network(cfg)          # a model the engines could not run is refused before it is trained
    summary = train(a.data, a.out, cfg, tcfg, resume=a.resume, skip_bad=a.skip_bad, device=a.device,
                    progress=not a.quiet, init_model=init, cache=a.cache)
    print(json.dumps(summary, indent=1))
    return 0


def _evaluate(a) -> int:
    from edanet.evaluation import evaluate
    from edanet.evaluation.cohort import evaluate_cohort, is_cohort, render_cohort_markdown
    if a.prime_seconds is not None and not 0 <= a.prime_seconds <= 3600:
        raise ValueError(f"--prime-seconds must lie in [0, 3600] (0: no primed figures), got {a.prime_seconds:g}")
    report = evaluate(a.data, model=a.model, out=a.out, backend=a.backend, num_samples=a.num_samples, seed=a.seed,
                      temperature=a.temperature, max_recordings=a.max_recordings, progress=not a.quiet,
                      seeds=a.seeds, baseline_model=a.baseline_model, redraws=a.redraws)
    print(report["markdown"])
    if is_cohort(a.data):
        pop = evaluate_cohort(a.data, a.model, backend=a.backend, num_samples=a.num_samples, seed=a.seed,
                              temperature=a.temperature, prime_s=a.prime_seconds or None, out=a.out, progress=not a.quiet,
                              max_recordings=a.max_recordings)
        print(render_cohort_markdown(pop))
    return 0


def _bench(a) -> int:
    """The engine benchmark of a source checkout (``benchmarks/engines``, beside the package: it
    is not installed with it)."""
    import importlib
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / "engines" / "report.py").is_file():
        raise FileNotFoundError(f"edanet bench runs the benchmarks of a source checkout, and {root} has no "
                                "benchmarks/engines/: clone the repository, install it there (pip install -e .) "
                                "and run edanet bench from it")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("benchmarks.engines.report").main(a.rest)


def _setting(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked (reading the package's
    metadata would slow every other command's start)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from edanet import __version__
        print(f"edanet {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edanet", description="Synthetic EDA from audio (autoregressive WaveNet).")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--version", action=_Version, nargs=0, help="print the installed version and exit")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="audio file(s) -> EDA CSV(s) (and plots)",
                       description="One audio file to one CSV; or several files, folders (recursive) and glob "
                                   "patterns to a folder of CSVs at the inputs' relative paths, batched across "
                                   "clips, with OUTDIR/manifest.csv; runs under torchrun as shards.")
    g.add_argument("audio", nargs="+", metavar="IN", help="audio file(s) (any format soundfile reads), folders, globs")
    g.add_argument("-o", "--output", required=True,
                   help="output CSV for one file; an output folder for several inputs, a folder or a glob")
    g.add_argument("--plot", nargs="?", const="", metavar="PATH",
                   help="also write a plot: to PATH (.png, .pdf, .svg, ...) for one file; beside each CSV for a "
                        "corpus (--plot, or --plot svg for another format)")
    g.add_argument("--batch-size", type=int, metavar="N",
                   help="corpus: engine rows (clips x samples) per call (default 16 on a CPU, 256 on a GPU)")
    g.add_argument("--overwrite", action="store_true", help="corpus: regenerate outputs that already exist")
    g.add_argument("--fail-fast", action="store_true",
                   help="corpus: stop at the first clip that fails (default: record it in the manifest, go on)")
    g.add_argument("--model", help="model folder (default: the bundled model)")
    g.add_argument("--backend", default="auto", help="auto, fused, cpu, torch, reference, triton, cuda")
    g.add_argument("--num-samples", type=int, default=1)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--format", choices=["e4", "time", "bids"], default="e4",
                   help="e4: Empatica E4's EDA.csv (default); time: a time,eda CSV (time,sample_0,... with "
                        "several samples); bids: a BIDS physio .tsv.gz. A JSON sidecar beside it records how it "
                        "was made (and, for BIDS, its columns and rate)")
    g.add_argument("--start-time", metavar="T",
                   help="when the audio starts: Unix seconds or ISO 8601 (E4's first row; the sidecar)")
    g.add_argument("--with-median", action="store_true",
                   help="with several samples, also a column median_of_samples: a summary, not a recording")
    g.add_argument("--initial-eda", type=float, metavar="US",
                   help="the level (µS) the EDA starts from (default: the model's, from its training data)")
    g.add_argument("--prime", metavar="EDA_FILE",
                   help="a recording of the person from the start of the audio (any EDA file edanet reads): "
                        "its steps are kept, and the rest continues it")
    g.add_argument("--eda-range", type=float, nargs=2, metavar=("LO", "HI"),
                   help="legacy 'normalized' models only: the µS range their output is mapped to")
    g.set_defaults(fn=_generate)

    st = sub.add_parser("stream", help="live: raw PCM audio on stdin -> time,eda CSV lines on stdout",
                        description="Reads raw PCM (little-endian, interleaved channels) from stdin and writes a "
                                    "time,eda CSV line to stdout as each EDA step completes, e.g.  sox -d -t raw -e "
                                    "signed -b 16 -c 1 -r 16000 - | edanet stream --sample-rate 16000")
    st.add_argument("--sample-rate", type=float, required=True, metavar="HZ", help="the PCM's sample rate")
    st.add_argument("--channels", type=int, default=1, help="interleaved channels in the PCM (default 1)")
    st.add_argument("--encoding", choices=sorted(STREAM_ENCODINGS), default="s16",
                    help="s16: signed 16-bit integers (default); f32: 32-bit floats in [-1, 1]")
    st.add_argument("--model", help="model folder (default: the bundled model)")
    st.add_argument("--backend", default="auto", help="auto, fused, cpu, torch, reference, triton, cuda")
    st.add_argument("--num-samples", type=int, default=1, help="samples per step: columns sample_0, sample_1, ...")
    st.add_argument("--with-median", action="store_true",
                    help="with several samples, also a column median_of_samples: a summary, not a recording")
    st.add_argument("--seed", type=int, default=None)
    st.add_argument("--temperature", type=float, default=1.0)
    st.add_argument("--initial-eda", type=float, metavar="US", help="the level (µS) the EDA starts from")
    st.add_argument("--prime", metavar="EDA_FILE",
                    help="a recording of the person from the start of the audio: its steps are written as they "
                         "are, then the stream continues it")
    st.set_defaults(fn=_stream)

    s = sub.add_parser("synth", help="write synthetic paired audio + EDA data")
    s.add_argument("--out", required=True)
    s.add_argument("--pairs", type=int, default=200, help="pairs; with --subjects, clips (each heard by every subject)")
    s.add_argument("--subjects", type=int, metavar="K",
                   help="a cohort: K simulated people, each with its own traits, all hearing every clip "
                        "(NAME.wav + NAME.<subject>.csv; traits in subjects.json)")
    s.add_argument("--seconds", type=float, default=120.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--audio-rate", type=int, default=16000)
    s.add_argument("--eda-rate", type=int, default=4)
    s.set_defaults(fn=_synth)

    t = sub.add_parser("train", help="train a model on a folder of pairs")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True, help="run folder (checkpoints, log, final model)")
    t.add_argument("--preset", default="small", help="model preset: tiny, small, base")
    t.add_argument("--set", type=_setting, action="append", metavar="NAME=VALUE", help="override a config field")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--crop-steps", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--val-every", type=int)
    t.add_argument("--ckpt-every", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--onset-focus", type=float, metavar="P",
                   help="fraction of crops placed at acoustic onsets (default: the preset's)")
    t.add_argument("--val-fraction", type=float, metavar="F",
                   help="fraction of recordings held out for validation, by a hash of their names (default 0.1)")
    t.add_argument("--keep-checkpoints", type=int, metavar="N",
                   help="keep only the N newest checkpoints (the latest is never deleted; default: all)")
    t.add_argument("--workers", type=int, metavar="N",
                   help="DataLoader workers reading the batches (default: 2 beside a GPU, 0 on a CPU)")
    t.add_argument("--cache", metavar="DIR",
                   help="folder of the audio's frames, computed once and read a window at a time "
                        "(default ~/.cache/edanet/frames, or $XDG_CACHE_HOME/edanet/frames)")
    t.add_argument("--device")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--init", help="start from this model's weights (fine-tuning); its config is used")
    t.add_argument("--skip-bad", action="store_true", help="skip unreadable pairs with a warning")
    t.set_defaults(fn=_train)

    e = sub.add_parser("evaluate", help="generated EDA against held-out data and baselines: NLL, event-locked "
                                        "response, response rate, SCR shapes, texture, SCR F1")
    e.add_argument("--data", required=True, help="folder of pairs with ground truth (edanet synth)")
    e.add_argument("--model", help="model folder (default: the bundled model)")
    e.add_argument("--baseline-model", metavar="DIR",
                   help="a second model scored beside it, e.g. the same architecture trained without audio "
                        "(edanet train ... --set audio_input=false)")
    e.add_argument("--out", help="report path prefix: writes OUT.md, OUT.json and OUT_event_locked.png")
    e.add_argument("--backend", default="auto")
    e.add_argument("--num-samples", type=int, default=4, help="samples per recording and seed")
    e.add_argument("--seed", type=int, default=0, help="first evaluation seed")
    e.add_argument("--seeds", type=int, default=3, help="evaluation seeds (seed, seed+1, ...): figures are mean "
                                                       "+- sd over them")
    e.add_argument("--redraws", type=int, default=4,
                   help="data redrawn per recording and seed (the ground-truth generator with other seeds)")
    e.add_argument("--temperature", type=float, default=1.0)
    e.add_argument("--max-recordings", type=int)
    e.add_argument("--prime-seconds", type=float, default=120.0, metavar="S",
                   help="on a cohort (NAME.<subject>.csv): prime with each recording's first S seconds for the "
                        "primed figures (default 120; 0: none)")
    e.set_defaults(fn=_evaluate)

    # every further argument, --help too, goes to benchmarks/engines/report.py
    b = sub.add_parser("bench", help="benchmark every backend built here (see benchmarks/)", add_help=False)
    b.set_defaults(fn=_bench)
    return p


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user's mistake raises: bad values and arguments (ValueError, TypeError), bad or
    unwritable files (OSError; OverflowError and RecursionError from absurd numbers or nesting
    in them), more than the machine's memory (MemoryError), a backend not built here, an optional
    dependency not installed (MissingExtra: its message names the extra)."""
    from edanet.extras import MissingExtra
    from edanet.generation import BackendUnavailable
    return (ValueError, TypeError, OSError, MemoryError, OverflowError, RecursionError,
            BackendUnavailable, MissingExtra)


def _one_line(e: BaseException) -> str:
    """The message of ``e`` on one line (a library's message may hold line breaks)."""
    if isinstance(e, OSError) and e.filename is None and e.strerror:
        msg = e.strerror        # edanet.io's own OSErrors carry the whole message in strerror
    elif isinstance(e, MemoryError):
        msg = "out of memory" + (f" ({e})" if str(e) else "") + ": the input or the model is too large for " \
              "the memory this process may use"
    elif isinstance(e, RecursionError):
        msg = f"an input nested too deeply to read ({e})"
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())


def _out_of_memory(e: RuntimeError) -> bool:
    """Whether torch failed to allocate (on the CPU it says so only in the message)."""
    import torch
    return isinstance(e, torch.OutOfMemoryError) or "can't allocate memory" in str(e)


_STD_STREAMS = ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w"))


def _reopen_closed_std_streams() -> frozenset[str]:
    """The standard streams the process started with closed (``<&-``, ``>&-``), each given
    /dev/null in its place, so that no file opened later lands on descriptor 0, 1 or 2 and
    ``print`` has somewhere to go; returns their names (``stream`` refuses to run without
    its stdin and stdout)."""
    import os
    closed = []
    for fd, name, mode in _STD_STREAMS:
        try:
            os.fstat(fd)
            continue
        except OSError:
            closed.append(name)
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        setattr(sys, name, open(fd, mode, closefd=False))
    return frozenset(closed)


def main(argv: list[str] | None = None) -> int:
    closed = _reopen_closed_std_streams()
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.closed_streams = closed
    errors = _user_errors()
    try:
        return args.fn(args)
    except errors as e:
        print(f"edanet {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        # torch reports a failed CPU allocation (a memory cap, an overcommitted machine) as a
        # RuntimeError; any other RuntimeError is a bug and keeps its traceback
        if not _out_of_memory(e):
            raise
        print(f"edanet {args.command}: error: {_one_line(MemoryError())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
