"""The ``airflow-carbon`` command line.

``backtest`` imports only the pure core, so it starts fast and runs without an Airflow
installation being configured. Every input error ends in one line on stderr naming the
problem and the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn, TextIO

from airflow_carbon_provider import __version__
from airflow_carbon_provider.testing.local_clusters import add_emulator_parser

PROG = "airflow-carbon"


class CliError(Exception):
    """An error to report as one line, without a traceback."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage block is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


MAX_DURATION = timedelta(days=3650)
"""The longest duration a flag takes (10 years): longer ones only overflow dates downstream."""


def _duration(what: str) -> Callable[[str], timedelta]:
    def parse(text: str) -> timedelta:
        from airflow_carbon_provider.core.durations import parse_duration

        too_long = f"{what} {text!r} is too long; at most {MAX_DURATION.days}d (10 years)"
        try:
            value = parse_duration(text, what)
        except OverflowError:  # beyond what a timedelta holds
            raise argparse.ArgumentTypeError(too_long) from None
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if value > MAX_DURATION:
            raise argparse.ArgumentTypeError(too_long)
        return value

    parse.__name__ = what
    return parse


def show_duration(delta: timedelta) -> str:
    """Format a duration as the flags take it, in whole hours where it can (``48h``, ``90m``, ``45s``)."""
    seconds = delta.total_seconds()
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# str(timedelta) as the core's messages print it: "2 days, 0:00:00", "0:00:00", "-1 day, 23:00:00"
_TIMEDELTA = re.compile(r"(?<![\w:.+-])(?:(-?\d+) days?, )?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?![\w:+.])")


def _durations_as_flags(message: str) -> str:
    """Return ``message`` with every ``str(timedelta)`` in it written as the flags take it (``48h``)."""

    def repl(match: re.Match[str]) -> str:
        days, hours, minutes, seconds, micro = match.groups()
        delta = timedelta(days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=int(seconds),
                          microseconds=int((micro or "0").ljust(6, "0")))
        return show_duration(delta)

    return _TIMEDELTA.sub(repl, message)


def _negative_values_attached(argv: list[str]) -> list[str]:
    """Return ``argv`` with ``--flag -4h`` written ``--flag=-4h``.

    argparse takes ``-4h`` for an option and says "expected one argument"; attached, the value
    reaches its parser, which says what is wrong with it. Only a dash followed by a digit is
    attached (no option of ours looks like that).
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out += argv[i:]
            break
        if (arg.startswith("--") and "=" not in arg and i + 1 < len(argv)
                and re.match(r"-\d", argv[i + 1])):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def _check_plot_target(path: Path) -> None:
    """Refuse a ``--plot`` file that cannot be written, before any work is done."""
    folder = path.parent
    if path.is_dir():
        raise CliError(f"cannot write --plot {path}: it is a folder; name a file in it, e.g. {path / 'plot.png'}")
    if not folder.exists():
        raise CliError(f"cannot write --plot {path}: folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise CliError(f"cannot write --plot {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CliError(f"cannot write --plot {path}: permission denied; choose a file you may write")


def _plot_error(path: Path, exc: OSError) -> CliError:
    return CliError(f"cannot write --plot {path}: {exc.strerror or type(exc).__name__}")


def _capacity(text: str) -> tuple[str, int]:
    zone, sep, number = text.partition("=")
    if not sep or not zone.strip() or not number.strip().isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not ZONE=N with N a whole number of jobs >= 1, e.g. GB=10")
    return zone.strip(), int(number)


def _jobs(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of jobs >= 1")
    return int(text)


def _instant(text: str) -> datetime:
    from airflow_carbon_provider.core.traces import parse_utc

    try:
        return parse_utc(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (e.g. 2023-03-01T00:00:00Z)") from None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every subcommand."""
    from airflow_carbon_provider.core.backtest import backtest_policies

    parser = _Parser(
        prog=PROG, description="Carbon-aware scheduling for Apache Airflow: the demo, tools and backtests."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    bt = sub.add_parser(
        "backtest",
        help="replay real grid traces and compare scheduling policies",
        description=(
            "Replay normalized carbon-intensity traces (timestamp_utc,zone,gco2_per_kwh): jobs arrive "
            "on a cadence, each policy picks a zone and start from forecasts, and each job is charged "
            "the actual intensity over its run. Without --trace, the real trace bundled with the "
            "package is used (March 2023, DE, GB, US-CAL-CISO, CA-ON; Electricity Maps, ODbL)."
        ),
    )
    bt.add_argument("--trace", action="append", type=Path, metavar="FILE",
                    help="normalized trace CSV; repeat for several files (default: the bundled trace)")
    bt.add_argument("--zones", help="comma-separated zones to choose from (default: every zone in the traces)")
    bt.add_argument("--home-zone", help="the zone a job runs in without us: the baseline (default: first zone)")
    bt.add_argument("--job-duration", type=_duration("--job-duration"), default=timedelta(hours=4),
                    metavar="DURATION", help="how long each job runs, e.g. 4h (default 4h)")
    bt.add_argument("--max-delay", type=_duration("--max-delay"), default=timedelta(hours=24),
                    metavar="DURATION", help="how late a job may start after it arrives (default 24h)")
    bt.add_argument("--arrival-every", type=_duration("--arrival-every"), default=timedelta(hours=6),
                    metavar="DURATION", help="a job arrives this often (default 6h)")
    bt.add_argument("--start", type=_instant, metavar="ISO", help="first arrival (default: start of the common period)")
    bt.add_argument("--end", type=_instant, metavar="ISO", help="no job may finish after this (default: end of the traces)")
    bt.add_argument("--forecast", default="noisy:10:1", metavar="MODEL",
                    help="perfect | history | realistic[:<seed>] | noisy:<MAPE percent>[:<seed>] | archive:FILE | "
                    "archive:ledger[:SOURCE][=URL] (the forecasts the hooks recorded; without --trace, actuals from "
                    "the ledger too) (default noisy:10:1)")
    bt.add_argument("--forecast-horizon", type=_duration("--forecast-horizon"), default=timedelta(hours=48),
                    metavar="DURATION", help="how far each forecast reaches (default 48h)")
    bt.add_argument("--refresh", type=_duration("--refresh"), default=timedelta(hours=1),
                    metavar="DURATION", help="carbon-aware re-plans at this forecast cadence while waiting (default 1h)")
    bt.add_argument("--policy", action="append", metavar="NAME",
                    help=f"policy to compare, repeatable: {', '.join(backtest_policies())} (default: all; "
                    "run-now and oracle always run, as the other figures are measured against them)")
    bt.add_argument("--threshold-pct", type=float, default=10.0, metavar="PCT",
                    help="for the threshold policy: move when home is this much dirtier than the greenest zone")
    bt.add_argument("--min-saving-pct", type=float, default=0.0, metavar="PCT",
                    help="hysteresis for carbon-aware: wait or move only for at least this saving (default 0)")
    bt.add_argument("--robust", choices=("on", "off"), default="on",
                    help="on (default): carbon-aware plans on forecasts conditioned on measured history "
                    "(corrected by the latest value, shrunk by the forecast's error by lead, extended past the "
                    "horizon); off: on the forecast as given (before 0.2.0)")
    bt.add_argument("--signal", choices=("average", "marginal"), default="average",
                    help="what the traces measure (default average); all zones share it")
    bt.add_argument("--capacity", action="append", type=_capacity, metavar="ZONE=N", default=[],
                    help="at most N jobs run at once in ZONE, repeatable (ZONE one of --zones; default: unlimited); "
                         "the oracle then needs scipy: pip install 'airflow-carbon-provider[backtest]'")
    bt.add_argument("--jobs-per-arrival", type=_jobs, default=1, metavar="K",
                    help="K identical jobs arrive at each --arrival-every (default: 1)")
    bt.add_argument("--format", choices=("table", "json"), default="table")
    bt.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw intensity per zone and the chosen starts")
    bt.set_defaults(handler=cmd_backtest)

    demo = sub.add_parser(
        "demo",
        help="run the example DAG end to end on the embedded default (no account, no cluster)",
        description=(
            "Run the example training DAG with dag.test() through Airflow's task runner: carbon data from the "
            "bundled real trace replayed on the wall clock, three Kubernetes API emulators on loopback as "
            "clusters, SQLite in a temporary AIRFLOW_HOME (or $AIRFLOW_HOME if set). Takes about a minute."
        ),
    )
    demo.add_argument("--format", choices=("table", "json"), default="table",
                      help="table (default) or json: the last line of output is one JSON object")
    demo.add_argument("--lead", type=_duration("--lead"), default=timedelta(seconds=40), metavar="DURATION",
                      help="how long after the launch the replayed low-carbon moment comes (default 40s, 10s-10m); "
                      "raise it on a slow machine, where the run reaches its task later")
    demo.add_argument("--ledger-url", metavar="URL",
                      help="where the demo records its run (default: its own SQLite file, "
                           "$AIRFLOW_HOME/carbon_demo_ledger.db, never the ledger real tasks use)")
    demo.set_defaults(handler=cmd_demo)
    add_emulator_parser(sub)
    _add_report_parser(sub)
    return parser


def _report_instant(text: str) -> datetime:
    """Parse ``--since``/``--until``: an ISO date or date-time, UTC unless it names an offset."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or date-time (e.g. 2026-03-01 or 2026-03-01T06:00:00Z)"
        ) from None
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:59:59-05:00 is in year 10000 in UTC
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: in UTC it must fall in the years 1 to 9999") from None


def _report_pct(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage (e.g. 30)") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 100")
    return value


def _report_g_per_kwh(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an intensity in g/kWh (e.g. 200)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _add_report_parser(sub: Any) -> None:
    rep = sub.add_parser(
        "report",
        help="what carbon-aware tasks emitted and saved, and whether the objectives were met",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Read the carbon ledger: one row per recorded task run (emissions at the realised intensity where and "
            "when it ran, the baseline of the same run on its home cluster at its original start, the saving, "
            "whether it started by its latest start), totals per group, and the objectives, each marked MET or "
            "MISSED.\n\n"
            "Ledger: --ledger-url, else $AIRFLOW_CARBON_LEDGER_URL, else the Airflow connection named by "
            "$AIRFLOW_CARBON_LEDGER_CONN_ID or [carbon] ledger_conn_id, else sqlite:///$AIRFLOW_HOME/carbon_ledger.db. "
            "Records spooled while the ledger was down are replayed first.\n\n"
            "Objectives (flags win over config): [carbon] slo_on_time_pct (default 100), slo_reduction_pct, "
            "slo_low_carbon_pct with slo_low_carbon_below (g/kWh), slo_signal_kind and slo_basis (the one group "
            "the reduction and low-carbon objectives are evaluated on, default average and realised); or "
            "AIRFLOW__CARBON__SLO_... variables; 'off' switches one off.\n\n"
            "Figures of different signal kinds (average, marginal) or bases (realised from history, forecast) are "
            "never added together: every group and total is labelled with its signal_kind and basis."
        ),
    )
    rep.add_argument("--dag-id", help="only this DAG")
    rep.add_argument("--task-id", help="only this task id")
    rep.add_argument("--cluster", help="only runs on this cluster connection id")
    rep.add_argument("--since", type=_report_instant, metavar="ISO", help="runs started at or after (UTC unless given)")
    rep.add_argument("--until", type=_report_instant, metavar="ISO", help="runs started before (UTC unless given)")
    rep.add_argument("--group-by", choices=("dag", "task", "cluster", "day"), default="dag",
                     help="totals and objectives per dag (default), task, cluster or day (UTC)")
    rep.add_argument("--format", choices=("table", "json", "csv"), default="table",
                     help="table (default); json: an object with rows, groups, objectives; csv: the rows")
    rep.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw baseline vs actual emissions per group")
    rep.add_argument("--ledger-url", metavar="URL", help="SQLAlchemy URL of the ledger (see above)")
    rep.add_argument("--slo-on-time", type=_report_pct, metavar="PCT",
                     help="objective: at least PCT %% of runs started by their latest start")
    rep.add_argument("--slo-reduction", type=_report_pct, metavar="PCT",
                     help="objective: emissions at least PCT %% below the baseline")
    rep.add_argument("--slo-low-carbon", type=_report_pct, metavar="PCT",
                     help="objective: at least PCT %% of compute-hours below --slo-low-carbon-below")
    rep.add_argument("--slo-low-carbon-below", type=_report_g_per_kwh, metavar="G_PER_KWH",
                     help="the threshold of the low-carbon objective, g/kWh")
    rep.add_argument("--slo-signal-kind", choices=("average", "marginal"),
                     help="evaluate the reduction and low-carbon objectives on runs of this signal kind "
                          "(default average)")
    rep.add_argument("--slo-basis", choices=("realised", "forecast"),
                     help="... and of this basis (default realised: from the source's history)")
    rep.add_argument("--forecast-skill", action="store_true",
                     help="instead of task runs: the recorded forecasts' error (MAPE, bias) by lead time per "
                          "source, zone and signal kind, against later forecasts' lead-0 values")
    rep.add_argument("--zone", help="with --forecast-skill: only this zone")
    rep.add_argument("--source", metavar="CONN_ID", help="with --forecast-skill: only this carbon connection")
    rep.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``airflow-carbon report``."""
    from airflow_carbon_provider.ledger.report import format_csv, format_table, plot_report, run_report
    from airflow_carbon_provider.ledger.slo import Objectives

    if args.forecast_skill:
        return _forecast_skill(args, out)
    if args.zone or args.source:
        raise CliError(f"{'--zone' if args.zone else '--source'} filters --forecast-skill only; add --forecast-skill")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError(
                "--plot needs matplotlib; install it with: pip install 'airflow-carbon-provider[plot]'"
            ) from None
        _check_plot_target(args.plot)
    objectives = Objectives.from_config(
        on_time_pct=args.slo_on_time, reduction_pct=args.slo_reduction,
        low_carbon_pct=args.slo_low_carbon, low_carbon_below=args.slo_low_carbon_below,
        signal_kind=args.slo_signal_kind, basis=args.slo_basis,
    )
    report = run_report(
        ledger_url=args.ledger_url, group_by=args.group_by, objectives=objectives, dag_id=args.dag_id,
        task_id=args.task_id, cluster=args.cluster, since=args.since, until=args.until,
    )
    if args.plot is not None:
        try:
            plot_report(report, args.plot)
        except OSError as exc:
            raise _plot_error(args.plot, exc) from None
    if args.format == "json":
        out.write(json.dumps(report) + "\n")
    elif args.format == "csv":
        out.write(format_csv(report))
    else:
        out.write(format_table(report) + "\n")
        if args.plot is not None:
            out.write(f"plot written to {args.plot}\n")
    return 0


def _forecast_skill(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``airflow-carbon report --forecast-skill``."""
    from airflow_carbon_provider.ledger.skill import format_skill_csv, format_skill_table, run_forecast_skill

    task_only = [flag for flag, value in (("--dag-id", args.dag_id), ("--task-id", args.task_id),
                                          ("--cluster", args.cluster), ("--plot", args.plot),
                                          ("--group-by", args.group_by != "dag" or None)) if value]
    task_only += [f"--slo-{name.replace('_', '-')}" for name in ("on_time", "reduction", "low_carbon",
                  "low_carbon_below", "signal_kind", "basis") if getattr(args, f"slo_{name}") is not None]
    if task_only:
        raise CliError(f"{task_only[0]} applies to task runs, not to --forecast-skill (which takes --zone, --source, "
                       "--since, --until, --format, --ledger-url)")
    report = run_forecast_skill(ledger_url=args.ledger_url, zone=args.zone, source=args.source, since=args.since,
                                until=args.until)
    if args.format == "json":
        out.write(json.dumps(report) + "\n")
    elif args.format == "csv":
        out.write(format_skill_csv(report))
    else:
        out.write(format_skill_table(report) + "\n")
    return 0


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``airflow-carbon demo``."""
    from airflow_carbon_provider.demo import run_demo

    if not timedelta(seconds=10) <= args.lead <= timedelta(minutes=10):
        raise CliError(f"--lead {int(args.lead.total_seconds())}s is outside 10s-10m; give e.g. --lead 90s")
    return run_demo(args.format, out, lead=args.lead, ledger_url=args.ledger_url)


def _progress(stream: TextIO) -> Callable[[int, int], None] | None:
    """Return a progress callback drawing a bar on ``stream`` when it is a terminal, else None."""
    if not stream.isatty():
        return None

    def draw(done: int, total: int) -> None:
        width = 30
        filled = width * done // total
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} runs")
        if done == total:
            stream.write("\r" + " " * (width + 30) + "\r")
        stream.flush()

    return draw


def cmd_backtest(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``airflow-carbon backtest``."""
    from airflow_carbon_provider.core.backtest import backtest_policies, run_backtest
    from airflow_carbon_provider.core.forecast import parse_forecast_spec
    from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace

    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError(
                "--plot needs matplotlib; install it with: pip install 'airflow-carbon-provider[plot]'"
            ) from None
        _check_plot_target(args.plot)  # before the run, not after minutes of it
    archive = _ledger_archive(args)  # archive:ledger: recorded forecasts (and, without --trace, actuals)
    paths = args.trace or ([] if archive else [bundled_trace_path()])
    actuals: dict[str, Any] = dict(archive.actuals) if archive and not args.trace else {}
    for path in paths:
        for zone, series in read_trace(path, kind=args.signal, source=path.name).items():
            if zone in actuals:
                raise CliError(f"zone {zone} appears in more than one --trace ({path}); give each zone once")
            actuals[zone] = series
    zones = [z.strip() for z in args.zones.split(",") if z.strip()] if args.zones else list(actuals)
    if args.zones is not None and not zones:
        raise CliError("--zones is empty; name at least one zone, e.g. --zones DE,GB")
    home = args.home_zone or zones[0]
    known = backtest_policies()
    policies = args.policy or None
    unknown = [p for p in policies or () if p not in known]
    if unknown:
        raise CliError(f"unknown policy {unknown[0]!r}; use one of: {', '.join(known)}")
    capacities: dict[str, int] = {}
    for zone, number in args.capacity:
        if zone in capacities:
            raise CliError(f"--capacity {zone} is given twice; give each zone once")
        capacities[zone] = number
    if capacities:
        unknown_zones = [z for z in capacities if z not in zones]
        if unknown_zones:
            raise CliError(f"--capacity {unknown_zones[0]}: not one of --zones ({', '.join(zones)})")
        try:
            import scipy  # noqa: F401  (the oracle under capacities is an integer program)
        except ImportError:
            raise CliError(
                "--capacity needs scipy for the oracle; install it with: pip install 'airflow-carbon-provider[backtest]'"
            ) from None
    model = archive.model(actuals) if archive else parse_forecast_spec(args.forecast, actuals, kind=args.signal)
    result = run_backtest(
        actuals,
        zones=zones,
        home_zone=home,
        job_duration=args.job_duration,
        max_delay=args.max_delay,
        arrival_every=args.arrival_every,
        forecast=model,
        policies=policies,
        start=args.start,
        end=args.end,
        forecast_horizon=args.forecast_horizon,
        refresh=args.refresh,
        threshold_pct=args.threshold_pct,
        min_saving_pct=args.min_saving_pct,
        robust=args.robust == "on",
        progress=_progress(sys.stderr),
        capacities=capacities or None,
        jobs_per_arrival=args.jobs_per_arrival,
    )
    for note in result.notes:
        sys.stderr.write(f"{PROG}: note: {note}\n")
    if args.plot is not None:
        from airflow_carbon_provider.core.backtest_plot import plot_backtest

        try:
            plot_backtest(result, actuals, args.plot)
        except OSError as exc:
            raise _plot_error(args.plot, exc) from None
    if args.format == "json":
        out.write(json.dumps(result.to_dict()) + "\n")
    else:
        out.write(format_table(result.to_dict()) + "\n")
        if args.plot is not None:
            out.write(f"plot written to {args.plot}\n")
    return 0


def _ledger_archive(args: argparse.Namespace) -> Any:
    """Return the ledger's recorded forecasts for ``--forecast archive:ledger[...]``, else None."""
    from airflow_carbon_provider.ledger.archive import is_ledger_spec, load_ledger_archive

    if not is_ledger_spec(args.forecast):
        return None
    zones = [z.strip() for z in args.zones.split(",") if z.strip()] if args.zones else None
    return load_ledger_archive(args.forecast, kind=args.signal, zones=zones)


def format_table(report: dict[str, Any]) -> str:
    """Render a backtest report as an aligned text table."""
    head = (
        f"{report['jobs']} jobs, {report['job_duration_h']:g} h each, may wait {report['max_delay_h']:g} h; "
        f"zones {', '.join(report['zones'])} (home {report['home_zone']}); forecast {report['forecast']}; "
        f"arrivals {report['period']['first_arrival']} to {report['period']['last_arrival']}"
    )
    caps = report.get("capacities")
    if caps is not None:
        head += (f"\n{report['jobs_per_arrival']} jobs per arrival; capacities "
                 f"{', '.join(f'{z} {n}' for z, n in caps.items()) or 'none'} (jobs at once); a job that found its "
                 "zone full ran at home (overflows)")
    columns = ["policy", "g/kWh", "reduction %", "of oracle", "mean delay h", "max delay h", "misses", "moved %"]
    if caps is not None:
        columns += ["overflows", "peak load (of capacity)"]
    rows = []
    for name, p in report["policies"].items():
        frac = p["fraction_of_oracle"]
        rows.append([
            name,
            f"{p['mean_intensity']:.1f}",
            f"{p['reduction_pct']:.1f}",
            "n/a" if frac is None else f"{100 * frac:.1f} %",
            f"{p['mean_delay_h']:.2f}",
            f"{p['max_delay_h']:.2f}",
            str(p["deadline_misses"]),
            f"{p['moved_pct']:.1f}",
        ])
        if caps is not None:
            rows[-1] += [str(p["capacity_overflows"]), ", ".join(
                f"{z} {n}" + (f"/{caps[z]}" if z in caps else "") for z, n in p["peak_load"].items())]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [head, "", "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit status."""
    from airflow_carbon_provider.core.backtest import BacktestError
    from airflow_carbon_provider.core.durations import DurationError
    from airflow_carbon_provider.core.forecast import ForecastError
    from airflow_carbon_provider.core.planner import PlanningError
    from airflow_carbon_provider.core.signals import SignalError
    from airflow_carbon_provider.core.traces import TraceError
    from airflow_carbon_provider.ledger.errors import LedgerError
    from airflow_carbon_provider.testing.local_clusters import EmulatorSpecError

    expected = (
        CliError, BacktestError, DurationError, ForecastError, PlanningError, SignalError, TraceError, LedgerError,
        EmulatorSpecError,
    )
    alembic = logging.getLogger("alembic")
    if alembic.level == logging.NOTSET:  # alembic 1.18 (Airflow 3.1) logs each plugin at INFO on import
        alembic.setLevel(logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(_negative_values_attached(list(sys.argv[1:] if argv is None else argv)))
    try:
        return int(args.handler(args, out or sys.stdout))
    except expected as exc:  # typed errors whose message is the whole story
        message = _durations_as_flags(str(exc))
    except OverflowError as exc:  # a date pushed past year 9999 by the input
        message = f"a date or duration is out of range ({exc}); use shorter durations or dates nearer today"
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
