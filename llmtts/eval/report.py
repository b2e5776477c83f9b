"""``llmtts report RUN_DIR``: one self-contained HTML page describing a run.

Sections (always present, saying "not available" when a run lacks the data):
pipeline steps, training curves of every stage (each directory holding a ``metrics.jsonl``), codec
metrics (a codec eval report), TTS evaluation (``tts_eval.json``: its sets side by side, per-sentence rows
with players), audio players (reference vs codec reconstruction vs synthesis) and spectrograms side by side.
Images (matplotlib, Agg) and audio are base64-embedded, so the single file can be mailed or opened anywhere.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import logging
import math
from pathlib import Path

import numpy as np

from llmtts.cli_paths import input_path, output_file
from llmtts.errors import UserError
from llmtts.io import write_text_atomic
from llmtts.optional import pyplot

log = logging.getLogger(__name__)

MAX_DEPTH = 3
MAX_AUDIO_ROWS = 6
MAX_PLAYERS_PER_SET = 6  # per-sentence players of each evaluation set
MAX_PLOTS_PER_STAGE = 8
MAX_TABLE_ROWS = 60
SECTIONS = ("pipeline", "curves", "codec", "tts", "audio", "spectrograms")


# ----------------------------------------------------------------------------- discovery
def _walk(root: Path, depth: int = MAX_DEPTH):
    """Directories under ``root`` (itself included) down to ``depth``, sorted, skipping checkpoints."""
    out = [root]
    if depth == 0:
        return out
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return out
    for c in children:
        if c.name in ("checkpoints", "tb", "wandb", "__pycache__") or c.name.startswith("."):
            continue
        out.extend(_walk(c, depth - 1))
    return out


def read_metrics(path: Path) -> list[dict]:
    """Rows of a metrics.jsonl; a torn last line (run killed mid-write) or junk line is skipped."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
            rows.append(row)
    return rows


def find_stage_runs(root: Path) -> list[tuple[str, Path]]:
    """Stage runs in the order they started (time of the first metrics row), i.e. pipeline order."""
    runs = [(_label(d, root), d / "metrics.jsonl") for d in _walk(root) if (d / "metrics.jsonl").is_file()]
    return sorted(runs, key=lambda r: (_first_time(r[1]), r[0]))


def _first_time(path: Path) -> float:
    try:
        with open(path, errors="replace") as fh:
            return float(json.loads(fh.readline()).get("time", 0.0))
    except (OSError, ValueError, AttributeError, TypeError):
        return float("inf")


def find_tts_evals(root: Path) -> list[Path]:
    return [d / "tts_eval.json" for d in _walk(root) if (d / "tts_eval.json").is_file()]


def find_codec_evals(root: Path) -> list[Path]:
    """Directories holding ``llmtts eval codec`` output: named ``codec_eval`` or ``.../eval/codec``."""
    out = []
    for d in _walk(root):
        rel = d.relative_to(root).as_posix() if d != root else ""
        if d.name == "codec_eval" or rel.endswith("eval/codec"):
            if any(d.glob("*.json")):
                out.append(d)
    return out


def _load_json(path: Path):
    """Parsed JSON, or None for a file that is unreadable or half-written (the report never crashes on one)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("%s: unreadable JSON, left out of the report", path)
        return None


def _label(d: Path, root: Path) -> str:
    return d.relative_to(root).as_posix() if d != root else root.name


# ----------------------------------------------------------------------------- rendering helpers
def _png(fig) -> str:
    plt = pyplot("llmtts report", "eval")

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _audio_tag(path: Path) -> str:
    if not path.is_file():
        return "<em>missing</em>"
    data = base64.b64encode(path.read_bytes()).decode()
    mime = "audio/flac" if path.suffix == ".flac" else "audio/wav"
    return f'<audio controls preload="none" src="data:{mime};base64,{data}"></audio>'


def _fmt(v) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return html.escape(str(v))
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _numeric_keys(rows: list[dict]) -> list[str]:
    keys: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if k in ("step", "time", "split", "epoch") or isinstance(v, bool):
                continue
            if isinstance(v, (int, float)):
                keys[k] = None
    # losses first (they answer "is it learning?"), bookkeeping (lr, speed, grad norms) last
    def rank(k: str) -> int:
        if "loss" in k:
            return 0
        if k == "lr" or k.startswith(("lr/", "grad_norm")) or k.endswith(("_per_s", "/s")):
            return 2
        return 1
    return sorted(keys, key=lambda k: (rank(k), k))


def _flatten(obj, prefix: str = "", depth: int = 0) -> dict[str, object]:
    out: dict[str, object] = {}
    if isinstance(obj, dict) and depth < 3:
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}.", depth + 1))
    elif isinstance(obj, (int, float, str, bool)) and not (isinstance(obj, str) and len(obj) > 80):
        out[prefix.rstrip(".")] = obj
    return out


# ----------------------------------------------------------------------------- sections
def section_pipeline(root: Path) -> str:
    state = root / "pipeline.json"
    if not state.is_file():
        return "<p>Not a pipeline run directory (no pipeline.json).</p>"
    data = _load_json(state)
    if not isinstance(data, dict):
        return "<p>pipeline.json is unreadable.</p>"
    rows = [[s.get("name"), s.get("status"), s.get("wall_s"), s.get("cpu_s"), s.get("log")]
            for s in data.get("steps", [])]
    out = _table(["step", "status", "wall time (s)", "CPU time (s)", "log"], rows)
    cfg = root / "pipeline.yaml"
    if cfg.is_file():
        out += f"<details><summary>resolved pipeline config</summary><pre>{html.escape(cfg.read_text())}</pre></details>"
    return out


def section_curves(root: Path) -> str:
    plt = pyplot("llmtts report", "eval")

    runs = find_stage_runs(root)
    if not runs:
        return "<p>No training runs found (no metrics.jsonl under the run directory).</p>"
    parts = []
    for label, path in runs:
        rows = read_metrics(path)
        keys = _numeric_keys(rows)[:MAX_PLOTS_PER_STAGE]
        if not keys:
            parts.append(f"<h3>{html.escape(label)}</h3><p>No metrics logged yet.</p>")
            continue
        ncol = min(4, len(keys))
        nrow = math.ceil(len(keys) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.6 * nrow), squeeze=False, layout="constrained")
        final = []
        for ax, key in zip(axes.flat, keys):
            for split, style in (("train", "-"), ("val", "o-")):
                pts = [(r["step"], r[key]) for r in rows if r.get("split", "train") == split
                       and isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, style, label=split, markersize=3)
                    final.append([key, split, pts[-1][0], pts[-1][1]])
                    if min(ys) > 0 and max(ys) / min(ys) > 20:
                        ax.set_yscale("log")
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        parts.append(f"<h3>{html.escape(label)}</h3>{_png(fig)}"
                     + _table(["metric", "split", "last step", "last value"], final))
    return "\n".join(parts)


def section_codec(root: Path) -> str:
    dirs = find_codec_evals(root)
    if not dirs:
        return "<p>No codec evaluation found (run <code>llmtts eval codec --out RUN/eval/codec</code>).</p>"
    parts = []
    for d in dirs:
        for p in sorted(d.glob("*.json")):
            data = _load_json(p)
            if data is None:
                continue
            rows = [[k, v] for k, v in _flatten(data).items()][:MAX_TABLE_ROWS]
            if rows:
                parts.append(f"<h3>{html.escape(p.relative_to(root).as_posix())}</h3>"
                             + _table(["metric", "value"], rows))
        # the codec eval's own comparison images, embedded as they are
        for img in sorted(d.rglob("*.png"))[:MAX_AUDIO_ROWS]:
            data = base64.b64encode(img.read_bytes()).decode()
            parts.append(f'<p>{html.escape(img.name)}<br><img src="data:image/png;base64,{data}"></p>')
    return "\n".join(parts) or "<p>Codec evaluation reports hold no metrics.</p>"


def _sets_of(data: dict) -> list[tuple[str, dict, list[dict]]]:
    """(set name, summary, utterance rows) of a ``tts_eval.json``; a version-1 file (one unnamed set, a
    top-level ``summary``) reads as one set ``eval``."""
    utts = [u for u in data.get("utterances", []) if isinstance(u, dict)]
    sets = data.get("sets")
    if isinstance(sets, dict):
        return [(name, s if isinstance(s, dict) else {}, [u for u in utts if u.get("set") == name])
                for name, s in sets.items()]
    return [("eval", data.get("summary") or {}, utts)]


# rows of the side-by-side summary: (label, value of a set's summary)
_SUMMARY_ROWS = (
    ("utterances", lambda s: s.get("num_utterances")),
    ("WER", lambda s: s.get("wer")),
    ("ceiling: judge WER on the references", lambda s: s.get("ref_wer")),
    # the ladder (llmtts.eval.ladder): where the words are lost between the references and the synthesis
    ("judge WER on the references through the codec", lambda s: s.get("codec_wer")),
    ("judge WER on the decoder's rendering of the LLM's teacher-forced states", lambda s: s.get("teacher_forced_wer")),
    ("LLM top-1 accuracy on the reference codes", lambda s: s.get("teacher_forced_top1")),
    ("CER", lambda s: s.get("cer")),
    ("judge CER on the references", lambda s: s.get("ref_cer")),
    ("runaway share (hit the max-length guard)", lambda s: s.get("max_length_share")),
    ("empty audio share", lambda s: s.get("empty_audio_share")),
    ("x real time", lambda s: s.get("x_real_time")),
    ("mean duration (s)", lambda s: (s.get("duration_s") or {}).get("mean")),
    ("refused texts", lambda s: s.get("num_errors")),
    ("source", lambda s: s.get("source")),
)


def _sets_side_by_side(sets: list[tuple[str, dict, list[dict]]]) -> str:
    """One column per set, so train vs unseen (and each against its ceiling) read across a row."""
    return _table(["", *[name for name, _, _ in sets]],
                  [[label, *[get(s) for _, s, _ in sets]] for label, get in _SUMMARY_ROWS])


def _speakers_table(sets: list[tuple[str, dict, list[dict]]]) -> str:
    """Judged per speaker (``eval tts --speaker/--speakers``): one row per (set, speaker) and the set's overall
    row (all speakers pooled), so a voice the model renders badly is not averaged away."""
    rows = []
    for name, s, _ in sets:
        per = s.get("speakers")
        if not isinstance(per, dict):
            continue
        for spk, v in [*per.items(), ("all speakers", s)]:
            v = v if isinstance(v, dict) else {}
            rows.append([name, spk, v.get("num_utterances"), v.get("wer"), v.get("ref_wer"), v.get("cer"),
                         v.get("max_length_share"), (v.get("duration_s") or {}).get("mean"), v.get("x_real_time")])
    if not rows:
        return ""
    return "<h4>per speaker</h4>" + _table(["set", "speaker", "utterances", "WER", "ceiling: judge WER on its references",
                                             "CER", "runaway share", "mean duration (s)", "x real time"], rows)


def _player(base: Path, rel) -> str:
    return _audio_tag(base / rel) if rel else "<em>none</em>"


def _sentence_rows(base: Path, name: str, utts: list[dict]) -> str:
    """Per sentence: text, transcripts, WER and players (synthesis, reference) for the first rows of a set."""
    header = ["id", "text", "ASR transcript", "WER", "CER", "duration (s)", "tokens", "hit max length",
              "judge on reference", "reference WER", "synthesis", "reference"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, u in enumerate(utts[:MAX_TABLE_ROWS]):
        uid = f"{u.get('id')} ({u['speaker']})" if u.get("speaker") else u.get("id")
        cells = [uid, u.get("text"), u.get("hypothesis"), u.get("wer"), u.get("cer"), u.get("duration_s"),
                 u.get("n_tokens"), u.get("hit_max_length"), u.get("ref_hypothesis"), u.get("ref_wer")]
        # audio is embedded: players for the first rows only keep the page mailable
        players = ([_player(base, u.get("wav")), _player(base, u.get("ref_wav"))] if i < MAX_PLAYERS_PER_SET
                   else ["&ndash;", "&ndash;"])
        body.append("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in cells)
                    + "".join(f"<td>{p}</td>" for p in players) + "</tr>")
    more = (f"<p>{len(utts) - MAX_TABLE_ROWS} more utterances in tts_eval.json.</p>"
            if len(utts) > MAX_TABLE_ROWS else "")
    return (f"<h4>set {html.escape(name)}</h4><table><tr>{head}</tr>{''.join(body)}</table>{more}")


def section_tts(root: Path, evals: list[Path]) -> str:
    if not evals:
        return "<p>No TTS evaluation found (run <code>llmtts eval tts</code>).</p>"
    parts = []
    for p in evals:
        data = _load_json(p)
        if not isinstance(data, dict):
            parts.append(f"<p>{html.escape(p.relative_to(root).as_posix())}: unreadable.</p>")
            continue
        sets = _sets_of(data)
        model = data.get("model") or {}
        asr = data.get("asr_model") or (data.get("summary") or {}).get("asr_model")
        info = f"<p>ASR judge: {_fmt(asr)}"
        if isinstance(model.get("sampling"), dict):
            info += "; sampling: " + ", ".join(f"{k}={_fmt(v)}" for k, v in model["sampling"].items())
        parts.append(f"<h3>{html.escape(p.relative_to(root).as_posix())}</h3>{info}</p>"
                     + _sets_side_by_side(sets) + _speakers_table(sets)
                     + "".join(_sentence_rows(p.parent, name, utts) for name, _, utts in sets))
    return "\n".join(parts)


def _audio_rows(evals: list[Path]) -> list[tuple[str, dict[str, Path]]]:
    """(set/utterance id, {kind: wav}) for the first utterances of each set of the newest evaluation."""
    if not evals:
        return []
    p = evals[-1]
    base = p.parent
    data = _load_json(p)
    sets = _sets_of(data) if isinstance(data, dict) else []
    per_set = max(1, MAX_AUDIO_ROWS // max(1, len(sets)))
    rows = []
    for name, _, utts in sets:
        for u in utts[:per_set]:
            kinds = {}
            if u.get("ref_wav"):
                kinds["reference"] = base / u["ref_wav"]
            codec = base / u["codec_wav"] if u.get("codec_wav") else base / "codec" / f"{u.get('id')}.wav"
            if codec.is_file():
                kinds["codec reconstruction"] = codec
            if u.get("tf_wav") and (base / u["tf_wav"]).is_file():
                kinds["decoder on teacher-forced states"] = base / u["tf_wav"]
            kinds["synthesis"] = base / u["wav"]
            label = f"{name}/{u.get('id')}" if len(sets) > 1 else str(u.get("id"))
            rows.append((f"{label} ({u['speaker']})" if u.get("speaker") else label, kinds))
    return rows


def section_samples(root: Path) -> str:
    """The pipeline's own synthesis (``RUN/synth/*.wav``), if any."""
    wavs = sorted((root / "synth").glob("*.wav"))[:MAX_AUDIO_ROWS] if (root / "synth").is_dir() else []
    return "".join(f"<p>{html.escape(w.relative_to(root).as_posix())}<br>{_audio_tag(w)}</p>" for w in wavs)


def section_audio(rows, root: Path | None = None) -> str:
    samples = section_samples(root) if root is not None else ""
    if not rows:
        return samples + "<p>No evaluation audio: run <code>llmtts eval tts</code> (with <code>--reference-dir</code> for references).</p>"
    kinds = ["reference", "codec reconstruction", "synthesis"]
    head = "".join(f"<th>{k}</th>" for k in ["id"] + kinds)
    body = "".join(
        f"<tr><td>{html.escape(uid)}</td>"
        + "".join(f"<td>{_audio_tag(k[kind]) if kind in k else '<em>not available</em>'}</td>" for kind in kinds)
        + "</tr>" for uid, k in rows)
    return samples + f"<table><tr>{head}</tr>{body}</table>"


def _logmel(path: Path) -> tuple[np.ndarray, int, int]:
    import torch

    from llmtts.audio import LogMel, load_audio

    wav, sr = load_audio(path)
    hop = max(1, sr // 100)
    mel = LogMel(sr, n_fft=4 * hop if (4 * hop) % 2 == 0 else 4 * hop + 1, hop_length=hop, n_mels=80)
    return mel(torch.from_numpy(wav)[None])[0].numpy(), sr, hop


def section_spectrograms(rows) -> str:
    plt = pyplot("llmtts report", "eval")

    if not rows:
        return "<p>No audio to show.</p>"
    parts = []
    for uid, kinds in rows:
        avail = [(k, p) for k, p in kinds.items() if p.is_file()]
        if not avail:
            continue
        fig, axes = plt.subplots(1, len(avail), figsize=(4.2 * len(avail), 2.6), squeeze=False, layout="constrained")
        for ax, (kind, p) in zip(axes[0], avail):
            try:
                m, sr, hop = _logmel(p)
            except UserError as exc:
                ax.set_title(f"{kind}: unreadable", fontsize=9)
                log.warning("%s", exc)
                continue
            ax.imshow(m, origin="lower", aspect="auto", cmap="magma", vmin=float(m.max()) - 10.0,
                      extent=(0, m.shape[1] * hop / sr, 0, m.shape[0]))
            ax.set_title(f"{kind} ({sr} Hz)", fontsize=9)
            ax.set_xlabel("s", fontsize=8)
            ax.set_ylabel("mel bin", fontsize=8)
            ax.tick_params(labelsize=7)
        parts.append(f"<h4>{html.escape(uid)}</h4>{_png(fig)}")
    return "\n".join(parts) or "<p>No audio to show.</p>"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;
vertical-align:top}th{background:#f3f3f3}img{max-width:100%}h2{border-bottom:2px solid #333;margin-top:1.6em}"""


def render_report(run_dir: str | Path) -> str:
    root = Path(run_dir)
    if not root.is_dir():
        raise UserError(f"{root}: run directory not found")
    evals = find_tts_evals(root)
    rows = _audio_rows(evals)
    bodies = {
        "pipeline": ("Pipeline steps", section_pipeline(root)),
        "curves": ("Training curves", section_curves(root)),
        "codec": ("Codec metrics", section_codec(root)),
        "tts": ("TTS evaluation (offline ASR judge)", section_tts(root, evals)),
        "audio": ("Audio: reference vs codec reconstruction vs synthesis", section_audio(rows, root)),
        "spectrograms": ("Spectrograms", section_spectrograms(rows)),
    }
    toc = " &middot; ".join(f'<a href="#{k}">{html.escape(t)}</a>' for k, (t, _) in bodies.items())
    sections = "\n".join(f'<section id="{k}"><h2>{html.escape(t)}</h2>\n{b}\n</section>' for k, (t, b) in bodies.items())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>llmtts report: {html.escape(root.name)}</title>"
            f"<style>{_CSS}</style></head><body><h1>Run report: {html.escape(str(root.resolve()))}</h1>"
            f"<p>{toc}</p>{sections}</body></html>")


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    html_text = render_report(run_dir)
    out = Path(out) if out else Path(run_dir) / "report.html"
    write_text_atomic(out, html_text)
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    input_path(parser, "run_dir", holds_outputs=True, help="a pipeline run root or any directory holding stage run dirs / eval outputs")
    output_file(parser, "--out", help="HTML file to write (default: RUN_DIR/report.html)")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    out = write_report(args.run_dir, args.out)
    print(f"report: {out}")
    return 0
