"""``dialwhom simulate``: its arguments, scenario files and exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


from dialwhom.simulator.model import DEFAULT_CALLER, DEFAULT_EXOPHONE, DEFAULT_MAX_REQUESTS, DEFAULT_TIMEOUT, EXIT_USAGE, OUTCOMES, SimulationOptions, UsageError
from dialwhom.simulator.player import simulate
from dialwhom.simulator.render import outcome_line, render_json, render_transcript, want_colour

# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

DESCRIPTION = """\
Play Exotel's Connect applet ("Dial Whom" URL) against URL: send the GET Exotel sends,
enforce its 10-second limit, fall back to --fallback-url as Exotel does, check the answer
(200, text/plain, comma-separated E.164), then play the dial attempts, re-requesting the URL
after each failed attempt. Who picks up is scripted; no real call is placed."""

EPILOG = """\
examples:
  dialwhom simulate 'http://127.0.0.1:8000/exotel/dial-whom?token=s3cret'
  dialwhom simulate URL --from 09812345678 --answers busy,completed
  dialwhom simulate URL --fallback-url http://127.0.0.1:8000/exotel/fallback --timeout 3
  dialwhom simulate URL --custom-field ACC-42 --digits 1234 --param flow_id=4711
  dialwhom simulate URL --scenario scenario.json --no-fetch-after-attempt
  dialwhom simulate http://127.0.0.1:8000/exotel/connect --exotel-version 1.0
  dialwhom simulate URL --json | jq .outcome
  dialwhom simulate URL -q && echo "contract kept"

exit codes:
  0  contract kept (whoever answered, even nobody)
  1  contract broken: non-200 or connection error without a working fallback, timeout,
     empty 200, invalid body
  2  usage error

See docs/simulate.md for the transcript and every finding."""


def _outcome_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in OUTCOMES]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"{(bad or [text])[0]!r} is not an outcome; use {', '.join(OUTCOMES)}")
    return items


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 600 seconds")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser(subparsers: Any | None = None) -> argparse.ArgumentParser:
    """Add ``simulate`` to a parent's ``add_subparsers()`` action, or build a standalone parser.

    The subcommand sets ``func=run_from_args`` so a parent can dispatch with ``args.func(args)``.
    """
    common = dict(description=DESCRIPTION, epilog=EPILOG,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    if subparsers is None:
        parser = argparse.ArgumentParser(prog="dialwhom simulate", **common)
    else:
        parser = subparsers.add_parser(
            "simulate", help="play Exotel against any URL, attempts and fallback included",
            **common)
    parser.add_argument("url", metavar="URL", help="the Dial Whom URL, as pasted into Exotel")
    parser.add_argument("--fallback-url", metavar="URL",
                        help="the applet's Fallback URL (default: none)")
    call = parser.add_argument_group("the call")
    call.add_argument("--from", dest="caller", metavar="NUMBER", default=DEFAULT_CALLER,
                      help=f"caller, sent as CallFrom and From (default {DEFAULT_CALLER})")
    call.add_argument("--to", dest="exophone", metavar="NUMBER", default=DEFAULT_EXOPHONE,
                      help=f"ExoPhone, sent as CallTo and To (default {DEFAULT_EXOPHONE})")
    call.add_argument("--call-sid", metavar="SID", help="CallSid (default: 32 random hex chars)")
    call.add_argument("--custom-field", metavar="VALUE", help="send CustomField=VALUE")
    call.add_argument("--digits", metavar="DIGITS",
                      help='keys from an earlier Gather applet; sent as digits="DIGITS" '
                      "on the first request only")
    call.add_argument("--param", dest="params", metavar="K=V", action="append",
                      type=_key_value, default=[],
                      help="extra query parameter, repeatable; overrides a built-in one")
    who = parser.add_argument_group("who answers").add_mutually_exclusive_group()
    who.add_argument("--answers", metavar="LIST", type=_outcome_list, default=[],
                     help="outcome of each successive attempt, comma-separated, from "
                     f"{', '.join(OUTCOMES)}; later attempts: no-answer (default: all no-answer)")
    who.add_argument("--scenario", metavar="FILE",
                     help='JSON file {"answers": {"+9198...": "completed", ...}}; numbers not '
                     "listed: no-answer")
    exo = parser.add_argument_group("Exotel settings")
    exo.add_argument("--fetch-after-attempt", action=argparse.BooleanOptionalAction,
                     default=True,
                     help="re-request the URL after each failed attempt (default: on)")
    exo.add_argument("--timeout", metavar="SECONDS", type=_positive_float,
                     default=DEFAULT_TIMEOUT,
                     help=f"limit for a whole request, body included (default {DEFAULT_TIMEOUT:g})")
    exo.add_argument("--exotel-version", metavar="VERSION", choices=["1.0"],
                     help="1.0: play the Dynamic URL (JSON) variant instead: sends the "
                     "Exotel-Version header, expects JSON, and the answer's "
                     "fetch_after_attempt replaces --fetch-after-attempt")
    exo.add_argument("--max-requests", metavar="N", type=_positive_int,
                     default=DEFAULT_MAX_REQUESTS,
                     help=f"stop after N requests (default {DEFAULT_MAX_REQUESTS})")
    out = parser.add_argument_group("output").add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document instead")
    out.add_argument("-q", "--quiet", action="store_true", help="print only the outcome line")
    parser.set_defaults(func=run_from_args)
    return parser


def load_scenario(path: str) -> dict[str, str]:
    """Read a ``--scenario`` file: ``{"answers": {number: outcome}}``."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise UsageError(f"cannot read scenario {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"scenario {path} is not valid JSON: {exc}") from None
    answers = data.get("answers") if isinstance(data, dict) else None
    if not isinstance(answers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in answers.items()):
        raise UsageError(f'scenario {path} must look like {{"answers": {{"+9198...": '
                         '"completed"}}')
    bad = {k: v for k, v in answers.items() if v not in OUTCOMES}
    if bad:
        number, outcome = next(iter(bad.items()))
        raise UsageError(f"scenario {path}: {number}: unknown outcome {outcome!r}; expected "
                         f"one of {', '.join(OUTCOMES)}")
    return answers


def options_from_args(args: argparse.Namespace) -> SimulationOptions:
    """Build :class:`SimulationOptions` from parsed arguments (raises :class:`UsageError`)."""
    return SimulationOptions(
        fallback_url=args.fallback_url,
        call_sid=args.call_sid,
        caller=args.caller,
        exophone=args.exophone,
        custom_field=args.custom_field,
        digits=args.digits,
        params=tuple(args.params),
        timeout=args.timeout,
        answers=tuple(args.answers),
        scenario=load_scenario(args.scenario) if args.scenario else None,
        fetch_after_attempt=args.fetch_after_attempt,
        max_requests=args.max_requests,
        exotel_version=args.exotel_version,
    )


def run_from_args(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    """Run a simulation from parsed arguments and print it; returns the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        options = options_from_args(args)
        result = simulate(args.url, options=options)
    except UsageError as exc:
        print(f"dialwhom simulate: error: {exc}", file=stderr)
        return EXIT_USAGE
    if args.json:
        stdout.write(render_json(result))
    elif args.quiet:
        stdout.write(outcome_line(result) + "\n")
    else:
        stdout.write(render_transcript(result, colour=want_colour(stdout)))
    stdout.flush()
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m dialwhom.simulator URL [...]``."""
    parser = build_parser(None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return run_from_args(args)


