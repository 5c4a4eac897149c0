"""The `voicewatch` command: parse, configure logging, wire objects, run. Nothing else lives here."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from voicewatch.cliargs import Parser, endpoint, existing_file, fail, finite_float, non_negative_int, positive_float

_LOG = logging.getLogger("voicewatch")


def _run(args: argparse.Namespace) -> int:
    from voicewatch.config import load_config
    from voicewatch.reload import load_model_and_bank
    from voicewatch.service import Core

    def load() -> tuple:
        config = load_config(args.config)
        return (config, *load_model_and_bank(config))

    config, embedder, bank = load()
    logging.getLogger().setLevel(config.log_level)
    core = Core(config, embedder, bank, loader=load)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: core.reload_requested.set())
    core.run(stop)
    return 0


def _scan(args: argparse.Namespace) -> int:
    from voicewatch.audiofile import TrackChoice
    from voicewatch.config import load_config
    from voicewatch.plugins.replay import stream_names
    from voicewatch.reload import load_model_and_bank
    from voicewatch.scan import scan, segments
    from voicewatch.tail import format_event

    config = load_config(args.config)
    if args.bank or args.model:
        import dataclasses

        config = dataclasses.replace(
            config,
            bank=dataclasses.replace(config.bank, path=args.bank or config.bank.path),
            model=dataclasses.replace(config.model, path=args.model or config.model.path),
        )
    embedder, bank = load_model_and_bank(config)
    languages = tuple(lang.strip() for lang in args.language.split(",") if lang.strip())
    names, track = stream_names(args.files, args.stream), TrackChoice(args.pid, languages)
    if args.workers > 1:
        from voicewatch.parallelscan import scan_parallel

        events = scan_parallel(args.files, names, embedder, bank, config, args.workers, track=track)
    else:
        events = scan(args.files, names, embedder, bank, config, track=track)
    for segment in segments(events):
        if args.json:
            print(json.dumps(segment.__dict__))
        else:
            from voicewatch.protocol import Event

            print(format_event(Event(type="end", **segment.__dict__)))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from voicewatch.plugins.replay import ReplaySource

    return ReplaySource().run(args)


def _tail(args: argparse.Namespace) -> int:
    from voicewatch.events import subscription_topics
    from voicewatch.tail import follow, print_events

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    topics = subscription_topics(args.stream, args.speaker, include_streams=args.speaker is None)
    on_event, player = print_events(args.json), None
    if args.play:
        from voicewatch.tail import ClipPlayer

        player = ClipPlayer(args.control, _curve(args))
        on_event = player.wrap(on_event)
    try:
        follow(args.connect, topics, on_event, stop, args.log, args.since, _curve(args))
    except KeyboardInterrupt:
        pass
    finally:
        if player is not None:
            player.close(timeout_s=1.0)
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from pathlib import Path

    from voicewatch.bank import SpeakerBank
    from voicewatch.embedder import Embedder
    from voicewatch.enrollment import embed_clips

    embedder = Embedder.load(args.model)
    if Path(args.bank).exists():
        bank = SpeakerBank.load(args.bank, embedder_id=embedder.model_id)
    else:
        bank = SpeakerBank(embedder.model_id, embedder.dim, default_threshold=embedder.threshold)
    from voicewatch.names import check_name

    check_name("speaker", args.name)
    embeddings = embed_clips(embedder, args.clips, args.min_speech)
    bank.enroll(args.name, embeddings, args.threshold)
    bank.save(args.bank)
    print(f"enrolled {args.name}: {len(embeddings)} exemplars ({len(bank.exemplars(args.name))} in all) → {args.bank}")
    return 0


def _speakers(args: argparse.Namespace) -> int:
    if args.bank is None:
        return _speakers_via_core(args)
    from voicewatch.bank import SpeakerBank

    bank = SpeakerBank.load(args.bank)
    changed = False
    for name in args.remove or []:
        bank.remove(name)
        changed = True
    for name, value in args.set_threshold or []:
        bank.set_threshold(name, value)
        changed = True
    if changed:
        bank.save(args.bank)
    rows = [{"name": n, "exemplars": len(bank.exemplars(n)), "threshold": bank.threshold(n)} for n in bank.names]
    _print_speakers(rows, args.json)
    return 0


def _speakers_via_core(args: argparse.Namespace) -> int:
    for name in args.remove or []:
        _ask(args, {"cmd": "remove", "name": name})
    for name, value in args.set_threshold or []:
        _ask(args, {"cmd": "set_threshold", "name": name, "threshold": value})
    _print_speakers(_ask(args, {"cmd": "speakers"})["speakers"], args.json)
    return 0


def _print_speakers(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"speakers": rows}))
        return
    for row in rows:
        print(f"{row['name']:<24} {row['exemplars']:>5} exemplars  threshold {row['threshold']:.3f}")
    if not rows:
        print("(no speakers)")


def _status(args: argparse.Namespace) -> int:
    reply = _ask(args, {"cmd": "status"})
    if args.json:
        print(json.dumps(reply))
        return 0
    print(f"model {reply['model']} on {reply['device']}, {reply['speakers']} speakers, "
          f"{reply['frames']} frames, {reply['windows']} windows, bad frames: {reply['bad_frames'] or 'none'}")
    for name, stream in sorted(reply["streams"].items()):
        print(f"{name:<16} {stream['rate']:>6} Hz  at {stream['stream_time']:>10.1f} s  "
              f"last frame {stream['last_frame_age_s']:.1f} s ago  rtf {stream['real_time_factor']}  "
              f"open segments {stream['open_segments']}")
    return 0


def _clip(args: argparse.Namespace) -> int:
    import base64

    from voicewatch.tail import clock

    reply = _ask(args, {"cmd": "clip", "id": args.id})
    data, info = base64.b64decode(reply["flac"]), reply["info"]
    if args.output == "-":
        sys.stdout.buffer.write(data)
        return 0
    from pathlib import Path

    out = Path(args.output or f"{args.id}.flac")
    out.write_bytes(data)
    print(f"{out}: {info['stream']}  {info['speaker']}  {clock(info['start'])}–{clock(info['end'])}  "
          f"(segment {clock(info['segment_start'])}–{clock(info['segment_end'])})")
    return 0


def _review(args: argparse.Namespace) -> int:
    if args.target == "list":
        reviews = _ask(args, {"cmd": "reviews", "limit": args.limit})["reviews"]
        if args.json:
            print(json.dumps({"reviews": reviews}))
        for r in [] if args.json else reviews:
            undone = f"  undone by {r['undone_by']}" if r["undone_by"] else ""
            print(f"{r['id']:>5}  {r['verdict']:<7} clip {r['clip']}  {r['stream']}  {r['speaker']}  by {r['who']}  "
                  f"threshold {r['threshold_before']:.3f} → {r['threshold_after']:.3f}{undone}  {r['note']}")
        return 0
    if args.target == "undo":
        if args.what is None or not args.what.isdigit():
            raise ValueError("usage: voicewatch review undo REVIEW_ID")
        reply = _ask(args, {"cmd": "undo", "review": int(args.what), "who": args.who})
        print(f"review {reply['review']} undone: {reply['speaker']} is back as it was (threshold {reply['threshold']:.3f})")
        return 0
    if args.what not in ("confirm", "reject"):
        raise ValueError("usage: voicewatch review CLIP_ID confirm|reject [--note TEXT]")
    reply = _ask(args, {"cmd": "review", "id": args.target, "verdict": args.what, "note": args.note,
                                   "who": args.who})
    if args.json:
        print(json.dumps(reply))
        return 0
    done = (f"{reply['added']} windows added as exemplars" if args.what == "confirm"
            else f"{reply['added']} windows added to its impostor cohort")
    print(f"review {reply['review']}: clip {reply['clip']} {args.what}ed as {reply['speaker']}: {done}; "
          f"threshold {reply['threshold']:.3f}" + (f" ({reply['note']})" if reply["note"] else ""))
    return 0


def _ask(args: argparse.Namespace, payload: dict) -> dict:
    """One control request to the core at `--connect`, waiting at most `--timeout` seconds."""
    from voicewatch.control import request

    return request(args.connect, payload, timeout_s=args.timeout, curve=_curve(args))


def _control_client_arguments(parser: argparse.ArgumentParser) -> None:
    """`--connect`, `--timeout` and the CURVE keys of commands that ask a running core."""
    parser.add_argument("--connect", default="tcp://127.0.0.1:5557", metavar="ENDPOINT", type=endpoint,
                        help="the core's control endpoint (default %(default)s)")
    parser.add_argument("--timeout", default=30.0, type=positive_float, metavar="SECONDS",
                        help="give up when the core has not answered within this time (default %(default)s)")
    from voicewatch.security import add_client_arguments

    add_client_arguments(parser)


def _threshold_assignment(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with a number, got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _curve(args: argparse.Namespace):  # noqa: ANN202 - CurveClient | None, imported lazily
    from voicewatch.security import client_from_args

    return client_from_args(args.curve_server_key, args.curve_client_key)


def _keys(args: argparse.Namespace) -> int:
    from voicewatch.security import make_keys

    public, secret = make_keys(args.folder, args.name)
    print(f"public key (give to the other side): {public}\nsecret key (keep private):        {secret}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from voicewatch.eventlog import read_events

    for event in read_events(args.log, stream=args.stream, start=args.start, end=args.end):
        if not args.rttm:
            print(json.dumps(event.to_dict()))
        elif event.type == "end":
            duration = event.end - event.start
            print(f"SPEAKER {event.stream} 1 {event.start:.3f} {duration:.3f} <NA> <NA> {event.speaker} <NA> <NA>")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from voicewatch.tools.demo import run_demo

    return run_demo(args.speed, web_port=args.web)


def _source(args: argparse.Namespace) -> int:
    return args.plugin.run(args)


def _source_config(args: argparse.Namespace) -> int:
    """`plugin:` and `args:` from a YAML file (what the systemd template unit runs)."""
    import yaml

    from voicewatch.config import ConfigError

    try:
        spec = yaml.safe_load(open(args.file).read())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read source file {args.file}: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("plugin"), str) or not isinstance(spec.get("args", []), list):
        raise ConfigError(f"{args.file}: expected `plugin: NAME` and `args: [list of command-line arguments]`")
    return main(["source", spec["plugin"], *map(str, spec.get("args", []))])


LAZY_COMMANDS = {
    "bench": ("voicewatch.bench", "measure real-time streams held, latency, memory and scan speed"),
    "train": ("voicewatch.training.train", "train the conv1d embedder with mined triplets"),
    "fuse": ("voicewatch.training.fuse", "join nets trained apart into one model that runs them side by side"),
    "calibrate": ("voicewatch.training.calibrate", "fit a model's score shift for broadcast conditions on training voices"),
    "pretrain": ("voicewatch.training.pretrain", "pre-train the embedder's conv blocks as an autoencoder"),
    "eval": ("voicewatch.training.evaluate", "EER/minDCF on window trials and segment F1 on annotated streams"),
    "loso": ("voicewatch.training.loso", "leave-one-source-out validation: fold models scored on the sources they never met"),
    "web": ("voicewatch.web", "serve the live timeline page of a running core (history, clips, confirm/reject)"),
    "report": ("voicewatch.report", "a static report of the event log (per channel and speaker) as HTML or CSV"),
}
"""Commands whose module (and torch) is imported only when the command is chosen: their module
provides `add_arguments(parser)` and `run(args) -> int`."""


def _chosen_command(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole command line; only the chosen command's heavy modules and plugins are imported."""
    from voicewatch.plugins.replay import ReplaySource, parse_speed
    from voicewatch.security import add_client_arguments

    chosen = _chosen_command(argv)
    parser = Parser(prog="voicewatch", description="Find one voice in many audio streams.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    run = command("run", _run, "run the core: ingest frames over ZeroMQ, publish detection events")
    run.add_argument("-c", "--config", type=existing_file, help="YAML config (default: built-in defaults, as in config.yaml)")

    scan = command("scan", _scan, "run the same pipeline in-process on recordings and print the segments")
    scan.add_argument("files", nargs="+", metavar="FILE", type=existing_file)
    scan.add_argument("--bank", type=existing_file, help="speaker bank (default: the config's, else the shipped demo bank)")
    scan.add_argument("--model", help="embedder checkpoint (default: the config's, else the shipped model)")
    scan.add_argument("--stream", help="stream name (default: the file name)")
    scan.add_argument("-c", "--config", type=existing_file, help="YAML config for windows and detector settings")
    scan.add_argument("--json", action="store_true", help="one JSON object per segment")
    scan.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                      help="decode and featurise the files in N processes, scored together (default: 1)")
    scan.add_argument("--pid", type=lambda v: int(v, 0), help="MPEG-TS: the audio track's PID (default: the first)")
    scan.add_argument("--language", default="", metavar="LANG[,LANG…]",
                      help="MPEG-TS: audio languages in order of preference (ISO-639-2), e.g. deu,eng")

    ReplaySource().add_arguments(command("replay", _replay, ReplaySource.help))

    tail = command("tail", _tail, "subscribe to a core and print its events")
    tail.add_argument("--connect", default="tcp://127.0.0.1:5556", metavar="ENDPOINT", type=endpoint,
                      help="the core's events endpoint (default %(default)s)")
    tail.add_argument("--stream", help="only this stream")
    tail.add_argument("--speaker", help="only this speaker's segments")
    tail.add_argument("--json", action="store_true", help="print events as JSON lines")
    tail.add_argument("--since", type=non_negative_int, metavar="ID",
                      help="first replay logged events after this id, then follow")
    tail.add_argument("--log", metavar="PATH", type=existing_file, help="the core's event log (events.log_path), for --since")
    tail.add_argument("--play", action="store_true", help="play each segment's clip as it ends, on the sound device")
    tail.add_argument("--control", default="tcp://127.0.0.1:5557", metavar="ENDPOINT", type=endpoint,
                      help="the core's control endpoint, where --play fetches clips (default %(default)s)")
    add_client_arguments(tail)

    enroll = command("enroll", _enroll, "add a speaker to a bank from WAV/FLAC clips (each 2 s window kept as "
                                        "recorded and once degraded: noise, music bed or phone band)")
    enroll.add_argument("name", metavar="NAME")
    enroll.add_argument("clips", nargs="+", metavar="CLIP", type=existing_file)
    enroll.add_argument("--bank", required=True, help="bank file (created when missing)")
    enroll.add_argument("--model", help="embedder checkpoint (default: the shipped model)")
    enroll.add_argument("--min-speech", type=positive_float, default=10.0, help="seconds of speech required (default 10)")
    enroll.add_argument("--threshold", type=finite_float, help="this speaker's threshold (default: the bank's)")

    speakers = command("speakers", _speakers,
                       "list speakers, remove them or set thresholds: in a bank file, or in a running core")
    speakers.add_argument("--bank", help="work on this bank file; without it, ask the running core")
    speakers.add_argument("--remove", action="append", metavar="NAME")
    speakers.add_argument("--set-threshold", action="append", metavar="NAME=VALUE", type=_threshold_assignment)
    speakers.add_argument("--json", action="store_true")
    _control_client_arguments(speakers)

    status = command("status", _status, "ask a running core for its streams, counters and model")
    status.add_argument("--json", action="store_true")
    _control_client_arguments(status)

    clip = command("clip", _clip, "fetch a segment's evidence clip (FLAC) from a running core")
    clip.add_argument("id", metavar="ID", help="the clip id an `end` event carries")
    clip.add_argument("-o", "--output", metavar="FILE", help="where to write it (default ID.flac; - for stdout)")
    _control_client_arguments(clip)

    review = command("review", _review, "confirm or reject a detection by its clip (feeds the bank), undo a review, "
                                        "or list reviews")
    review.add_argument("target", metavar="CLIP_ID|undo|list")
    review.add_argument("what", nargs="?", metavar="confirm|reject|REVIEW_ID")
    review.add_argument("--note", default="", help="why (kept in the review log)")
    review.add_argument("--who", default=_user(), help="who reviews (default: the login name, %(default)s)")
    review.add_argument("--limit", type=int, default=50, help="list: how many, newest first (default 50)")
    review.add_argument("--json", action="store_true")
    _control_client_arguments(review)

    keys = command("keys", _keys, "make a CURVE key pair (NAME.key public, NAME.key_secret private)")
    keys.add_argument("folder", metavar="FOLDER")
    keys.add_argument("name", metavar="NAME")

    export = command("export", _export, "print logged events as JSON lines, or finished segments as RTTM")
    export.add_argument("--log", required=True, metavar="PATH", type=existing_file, help="the core's event log (events.log_path)")
    export.add_argument("--rttm", action="store_true", help="RTTM lines of finished segments instead of JSON events")
    export.add_argument("--stream", help="only this stream")
    export.add_argument("--start", type=finite_float, metavar="SECONDS", help="segments ending after this stream time")
    export.add_argument("--end", type=finite_float, metavar="SECONDS", help="segments starting before this stream time")

    demo = command("demo", _demo, "start a core, replay the shipped demo recording, print found vs true timeline")
    demo.add_argument("--speed", type=parse_speed, default=None, help="replay speed (default: max)")
    demo.add_argument("--web", type=int, nargs="?", const=8090, metavar="PORT",
                      help="also serve the timeline page on 127.0.0.1:PORT (default 8090) and keep it up until Ctrl-C")

    source_config = command("source-config", _source_config, "run the source a YAML file describes (plugin, args)")
    source_config.add_argument("file", metavar="FILE", type=existing_file)

    source = command("source", _source, "run a source plugin that feeds a core")
    plugins = source.add_subparsers(dest="plugin_name", required=True, metavar="PLUGIN")
    from voicewatch.plugins import registry

    for name in sorted(registry.available()) if chosen == "source" else ():
        try:
            plugin = registry.load(name)
        except registry.PluginError as exc:
            _LOG.debug("%s", exc)
            continue
        sub = plugins.add_parser(name, help=plugin.help, description=plugin.help)
        plugin.add_arguments(sub)
        sub.set_defaults(plugin=plugin)

    for name, (module, help) in LAZY_COMMANDS.items():
        sub = command(name, _lazy_handler(module), help)
        if chosen == name:
            try:
                importlib.import_module(module).add_arguments(sub)
            except ImportError as exc:  # training needs extras; say how to get them
                sub.set_defaults(handler=lambda _a, name=name, error=exc: _missing(name, error))
    return parser


def _lazy_handler(module: str) -> Callable[[argparse.Namespace], int]:
    return lambda args: importlib.import_module(module).run(args)


def _missing(what: str, exc: ImportError) -> int:
    print(f"voicewatch {what} needs extra packages ({exc}); install them with: pip install 'voicewatch[train]'",
          file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args))
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise  # a bug: its traceback is what a report needs
        return fail(args.command, " ".join(str(exc).split()) or type(exc).__name__)
    except KeyboardInterrupt:
        return 130


def _user_errors() -> tuple[type[Exception], ...]:
    """What bad input, missing files or an unreachable core raise (every voicewatch error a user can fix is a
    ValueError); the modules are checked only once they were imported."""
    errors: list[type[Exception]] = [ValueError, TimeoutError, OSError]
    if (zmq := sys.modules.get("zmq")) is not None:
        errors.append(zmq.ZMQError)
    if (sqlite3 := sys.modules.get("sqlite3")) is not None:
        errors.append(sqlite3.Error)
    return tuple(errors)
