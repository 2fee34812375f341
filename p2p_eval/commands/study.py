"""``p2p-eval study``: create a perceptual study, serve it, report its results."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from p2p_eval.cli_args import (add_deprecated, add_quiet, nonnegative_float, nonnegative_int, port, positive_float,
                               positive_int, probability)
from p2p_eval.errors import UserError
from p2p_eval.outputs import declare
from p2p_eval.study import PROTOCOLS

ORDER = 60


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``study create``, ``serve``, ``report``, ``simulate``, ``power``, ``list``, ``close`` and ``token``."""
    parser = sub.add_parser("study", help="perceptual real-vs-fake studies: create, serve (web app), report",
                            description="Real-vs-fake perceptual studies as in pix2pix section 4.1 (AMT): a web app "
                            "for MTurk / Prolific / anonymous participants and the analysis of its database.")
    study_sub = parser.add_subparsers(dest="study_command", metavar="<study command>")
    for add in (_add_create, _add_serve, _add_report, _add_simulate, _add_power, _add_admin, _add_quick):
        add(study_sub)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _add_create(study_sub: argparse._SubParsersAction) -> None:
    create = study_sub.add_parser("create", help="register a study (prints its admin token and participant URL)",
                                  description="Register a study: the real folder, one folder per algorithm, the protocol. "
                                  "Settings may come from --config (TOML, same keys; the --images folders are the "
                                  "table fake: ALG = \"DIR\"; consent = \"...\" adds a consent page before the "
                                  "instructions, instructions = \"...\" the lab's own text); flags override the file.")
    create.add_argument("--db", required=True, help="SQLAlchemy URL or SQLite file (e.g. sqlite:///study.db)")
    create.add_argument("--config", type=Path, help="study TOML file with the same keys as the flags")
    create.add_argument("--name", help="study name (letters, digits, _ - .)")
    create.add_argument("--real", metavar="DIR", help="folder of real images")
    create.add_argument("--images", action="append", metavar="ALG=DIR",
                        help="an algorithm and its folder of generated images (repeat)")
    add_deprecated(create, "--fake", "--images", "images", append=True, metavar="ALG=DIR")
    create.add_argument("--protocol", choices=PROTOCOLS,
                        help="2afc (default): side by side; sequential: one after the other; single: one image, real "
                        "or fake 50/50; hype-time: HYPE's adaptive exposure (staircases over 100-1000 ms, noise mask; "
                        "staircase keys in --config); hype-inf: HYPE's unlimited-time real/fake judgements")
    create.add_argument("--paired", action="store_true", default=None, help="real and fake from the same input (matched by file stem)")
    create.add_argument("--trials", type=positive_int, help="test trials per participant (default 40)")
    create.add_argument("--practice", type=nonnegative_int, help="practice trials with feedback, excluded from results (default 10)")
    create.add_argument("--display-ms", type=positive_int, help="how long each image is shown, ms (default 1000)")
    create.add_argument("--vigilance", type=nonnegative_int, help="vigilance trials (real vs an obviously broken image; default 0)")
    create.add_argument("--vigilance-max-errors", type=nonnegative_int,
                        help="exclusion rule: exclude a participant with more wrong vigilance trials than this (default 0)")
    create.add_argument("--question", choices=["fake", "real"], help="ask which image is fake (default) or real")
    create.add_argument("--seed", type=int, help="seed of the trial plans (default 0)")
    create.add_argument("--max-participants", type=positive_int, metavar="N",
                        help="participants per algorithm; later arrivals are told the study is full (default: no cap)")
    create.add_argument("--redirect-url", help="where to send participants at the end; {code} becomes the completion code")
    create.add_argument("--allow-repeats", action="store_true", default=None,
                        help="--paired: accept fewer matching pairs than practice + trials (pairs are then shown again)")
    create.add_argument("--same-processing", action=argparse.BooleanOptionalAction, default=None,
                        help="serve every image, real and generated, at the same size as JPEG of the same quality, so "
                        "that file format and size cannot give the fake away (default: on)")
    create.add_argument("--serve-size", type=positive_int, help="with --same-processing: served size in pixels, square (default 256)")
    create.add_argument("--jpeg-quality", type=jpeg_quality, help="with --same-processing: JPEG quality 1-95 (default 75)")
    create.add_argument("--base-url", default="http://127.0.0.1:8000", help="server address for the printed URLs")
    create.set_defaults(func=_create)
    declare(create, inputs=["real", "images", "config"])


def _add_serve(study_sub: argparse._SubParsersAction) -> None:
    serve = study_sub.add_parser("serve", help="run the web app (uvicorn)",
                                 description="Serve participant pages and the API of the studies in --db (made by "
                                 "`study create`; an unknown database is refused). Study creation over HTTP is enabled "
                                 "when P2P_STUDY_ADMIN_TOKEN is set.")
    serve.add_argument("--db", required=True, help="SQLAlchemy URL or SQLite file")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=port, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=_workers, default="auto",
                       help="server processes sharing the port, or auto (the default): 1 on SQLite (more take turns "
                       "at the database through a lock file beside it, and one was faster), 2 on a server database "
                       "such as PostgreSQL (more answers/s than one on 2 cores; reports/bench.md)")
    serve.set_defaults(func=_serve)


def _add_report(study_sub: argparse._SubParsersAction) -> None:
    rep = study_sub.add_parser("report", help="%% labeled real per algorithm with SE, bootstrap CI, pairwise P(A > B)",
                               description="Analyse a study: mean of per-participant rates +- SE, 95% CI from a two-level "
                               "bootstrap, participants included / excluded; --csv exports every trial.")
    rep.add_argument("--db", required=True, help="SQLAlchemy URL or SQLite file")
    rep.add_argument("--study", required=True, help="study name")
    rep.add_argument("--json", type=Path, help="write the report as JSON here")
    rep.add_argument("--csv", type=Path, help="write every trial as CSV here")
    rep.add_argument("--bootstrap", type=positive_int, default=2000, help="bootstrap draws (default 2000)")
    rep.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    rep.add_argument("--format", choices=["text", "paper"], default="text",
                     help="text (default): every count; paper: the sources' tables (pix2pix Tables 4-5 \"%% labeled "
                     "real\" mean +- SE; fooling rate for sequential; %% correct real / fake for single; HYPE threshold / "
                     "error rates) as Markdown")
    rep.set_defaults(func=_report)
    declare(rep, files=["json", "csv"])


def _add_simulate(study_sub: argparse._SubParsersAction) -> None:
    sim = study_sub.add_parser(
        "simulate", help="synthetic participants of known behaviour take the study through its HTTP API (pilot)",
        description="Pilot a study end to end: N synthetic participants take it through the same requests the "
        "participant page makes, on the app run in process over --db (httpx ASGI transport; no server needed), one "
        "after the other. Each answers at random with probability --lapse, else takes the fake for real with its "
        "algorithm's --fooling probability (single-image trials: labels a real image fake with --false-alarm, default "
        "the same); vigilance trials are always right (lapses aside). Participants' own rates scatter around the "
        "given ones with --sd-between (Beta, probability scale). Then run `study report` on the same --db.")
    sim.add_argument("--db", required=True, help="SQLAlchemy URL or SQLite file holding the study (study create)")
    sim.add_argument("--study", required=True, help="study name")
    sim.add_argument("--participants", type=positive_int, required=True, help="how many synthetic participants (all algorithms together)")
    sim.add_argument("--fooling", metavar="ALG=P,...",
                     help="per algorithm, the probability that the fake is judged real, e.g. l1=0.05,l1_cgan=0.19 "
                     "(every protocol but hype-time)")
    sim.add_argument("--threshold-ms", metavar="ALG=MS,...",
                     help="hype-time: per algorithm, the exposure at which participants are right 79.4%% of the time "
                     "(the staircase's target; logistic psychometric function of the exposure), e.g. l1=250,l1_cgan=450")
    sim.add_argument("--spread-ms", type=nonnegative_float, default=80.0,
                     help="hype-time: scale of the logistic psychometric function, ms (default 80)")
    sim.add_argument("--sd-between-ms", type=nonnegative_float, default=0.0,
                     help="hype-time: between-participant sd of the thresholds, ms (default 0)")
    sim.add_argument("--false-alarm", metavar="ALG=P,...",
                     help="single-image protocols: per algorithm, probability that a real image is labelled fake "
                     "(default: the --fooling value, an unbiased observer)")
    sim.add_argument("--lapse", type=probability, default=0.0, help="probability of a random answer on any trial (default 0)")
    sim.add_argument("--sd-between", default="0", metavar="SD or ALG=SD,...",
                     help="between-participant sd of the rates, probability scale (Beta): one value, or one per "
                     "algorithm (default 0: all alike)")
    sim.add_argument("--seed", type=int, default=0, help="seed; participants are named sim-SEED-I (default 0)")
    sim.add_argument("--no-images", dest="images", action="store_false",
                     help="answer without fetching the images (faster; the page always fetches them): the answers are "
                     "stored as unseen and `study report` leaves them out of the scores, so such a run checks the "
                     "server and that rule, not the rates")
    add_quiet(sim)
    sim.set_defaults(func=_simulate)


def _add_power(study_sub: argparse._SubParsersAction) -> None:
    pw = study_sub.add_parser(
        "power", help="participants needed for a CI half-width or 80%% power, by simulation with the report's bootstrap",
        description="Sample size by simulation: for each participant count (per algorithm), simulated studies whose "
        "participants' rates scatter around --fooling (Beta, sd --sd-between on the probability scale) and answer "
        "--trials trials each are analysed with the same two-level bootstrap as `study report`. Prints the expected "
        "95% CI half-width per algorithm and the power to tell each pair apart (difference CI excludes 0); with "
        "--out writes power.md, power.json and power.png (power vs participants).")
    pw.add_argument("--fooling", required=True, metavar="P,P,...",
                    help="expected rates of fakes judged real, e.g. 0.06,0.19 (or l1=0.06,l1_cgan=0.19)")
    pw.add_argument("--trials", type=positive_int, default=40, help="test trials per participant (default 40, the paper's)")
    pw.add_argument("--sd-between", type=nonnegative_float, default=0.1,
                    help="sd of participants' own rates around the mean, probability scale (default 0.1)")
    pw.add_argument("--participants", default="10,20,30,40,50,60,80,100", metavar="N,N,...",
                    help="participant counts per algorithm to try (default 10,20,30,40,50,60,80,100)")
    pw.add_argument("--half-width", type=positive_float, metavar="X",
                    help="also report the smallest count whose expected CI half-width is <= X (rate scale, e.g. 0.03)")
    pw.add_argument("--sims", type=positive_int, default=400, help="simulated studies per count (default 400)")
    pw.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap draws per simulated study (default 1000)")
    pw.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    pw.add_argument("--out", type=Path, help="folder for power.md, power.json, power.png")
    add_quiet(pw)
    pw.set_defaults(func=_power)
    declare(pw, kept=["out"])


def _add_admin(study_sub: argparse._SubParsersAction) -> None:
    listing = study_sub.add_parser("list", help="the studies of a database: protocol, participants, state",
                                   description="One line per study: name, protocol, participants (completed), the cap "
                                   "per algorithm and the state (open; full: every algorithm has its cap; closed).")
    listing.add_argument("--db", required=True, help="SQLAlchemy URL or SQLite file")
    listing.set_defaults(func=_list)
    for name, what, func in (("close", "close a study to new arrivals (participants who started can finish)", _close),
                             ("token", "issue a new admin token for a study (the old one stops working)", _token)):
        cmd = study_sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        cmd.add_argument("--db", required=True, help="SQLAlchemy URL or SQLite file")
        cmd.add_argument("--study", required=True, help="study name")
        cmd.set_defaults(func=func)


def _add_quick(study_sub: argparse._SubParsersAction) -> None:
    q = study_sub.add_parser(
        "quick", help="one assessor on this machine: the quick-response real-or-fake test, then the results",
        description="The quick-response test of \"Evaluating the Capability of Pix2Pix\" (Table I) for one assessor: --count real and --count "
        "generated images, one at a time in a random order, each shown --display-ms, then --answer-ms to answer "
        "\"real\" or \"fake\" (no answer in time is a miss, counted as wrong). The session runs in a temporary "
        "folder on a free port of 127.0.0.1 (the browser opens where there is one); at the end the page shows the "
        "correct identifications per group and, per image, its label map, the ground truth and the prediction with "
        "your answer. Ctrl-C ends it; nothing is written.")
    q.add_argument("--real", type=Path, required=True, metavar="DIR", help="folder of real images (the ground truth)")
    q.add_argument("--images", type=Path, required=True, metavar="DIR",
                   help="folder of generated images (the predictions; same file names as --real)")
    q.add_argument("--labels", type=Path, metavar="DIR", help="folder of label maps (same file names), shown at the end")
    q.add_argument("--count", type=positive_int, default=25, help="real and generated images each (default 25)")
    q.add_argument("--answer-ms", type=positive_int, default=3000, help="time to answer, ms (default 3000)")
    q.add_argument("--display-ms", type=positive_int, default=3000, help="how long each image is shown, ms (default 3000)")
    q.add_argument("--seed", type=int, help="seed of the draw and the order (default: a new one each run)")
    q.add_argument("--port", type=port, help="port on 127.0.0.1 (default: a free one)")
    q.add_argument("--no-browser", dest="browser", action="store_false", help="only print the URL")
    q.set_defaults(func=_quick)
    declare(q, inputs=["real", "images", "labels"])


def _quick(args: argparse.Namespace) -> int:
    import sys
    import threading
    import time
    import webbrowser

    import uvicorn

    from p2p_eval.errors import require_dir
    from p2p_eval.study.quick import QuickOptions, add_routes, create, format_results, results, temporary_folder
    from p2p_eval.study.server import create_app
    from p2p_eval.study.store import make_engine

    if args.labels is not None:
        require_dir(args.labels, "--labels folder")
    opts = QuickOptions(real=args.real, images=args.images, labels=args.labels, count=args.count,
                        answer_ms=args.answer_ms, display_ms=args.display_ms, seed=args.seed)
    with socket.socket() as sock:  # a free port, unless one was given
        sock.bind(("127.0.0.1", args.port or 0))
        chosen = sock.getsockname()[1]
    base = f"http://127.0.0.1:{chosen}"
    with temporary_folder() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/quick.db")
        try:
            create(engine, opts, base)
            app = create_app(engine)
            add_routes(app, engine, opts)
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=chosen, log_level="warning"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            try:  # Ctrl-C from here on ends the test cleanly, even right after the URL is printed
                print(f"quick test: {2 * args.count} images; open {base}/s/quick (Ctrl-C ends it)", flush=True)
                if args.browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or
                                     sys.platform in ("darwin", "win32")):
                    webbrowser.open(f"{base}/s/quick")
                while (found := results(engine)) is None and thread.is_alive():
                    time.sleep(0.3)
                if found is not None:
                    print(format_results(found), flush=True)
                    print(f"results page: {base}/quick/results (Ctrl-C ends the test)", flush=True)
                while thread.is_alive():
                    time.sleep(0.3)
            except KeyboardInterrupt:
                print("quick test ended", flush=True)
            finally:
                server.should_exit = True
                thread.join(10)
        finally:
            engine.dispose()
    return 0


def _list(args: argparse.Namespace) -> int:
    from p2p_eval.study.lab import list_studies
    from p2p_eval.study.store import open_existing

    engine, _ = open_existing(args.db)
    print("name | protocol | participants (completed) | per algorithm cap | state")
    for s in list_studies(engine):
        print(f"{s['name']} | {s['protocol']} | {s['participants']} ({s['completed']}) | "
              f"{s['max_participants'] or 'none'} | {s['state']}")
    engine.dispose()
    return 0


def _close(args: argparse.Namespace) -> int:
    from p2p_eval.study.lab import close_study
    from p2p_eval.study.store import open_existing

    engine, _ = open_existing(args.db)
    closed = close_study(engine, args.study)
    engine.dispose()
    print(f"study {args.study} {'closed' if closed else 'was closed already'}: new arrivals are told so; "
          "participants who started can finish")
    return 0


def _token(args: argparse.Namespace) -> int:
    from p2p_eval.study.lab import new_admin_token
    from p2p_eval.study.store import open_existing

    engine, _ = open_existing(args.db)
    token = new_admin_token(engine, args.study)
    engine.dispose()
    print(f"new admin token for study {args.study} (shown once; the old one no longer works): {token}")
    return 0


def _create(args: argparse.Namespace) -> int:
    from p2p_eval.study.plan import create_study, load_spec, parse_fake, processing_of
    from p2p_eval.study.store import make_engine

    overrides = {"name": args.name, "real": args.real, "fake": parse_fake(args.images), "protocol": args.protocol,
                 "paired": args.paired, "trials": args.trials, "practice": args.practice, "display_ms": args.display_ms,
                 "vigilance": args.vigilance, "vigilance_max_errors": args.vigilance_max_errors,
                 "question": args.question, "seed": args.seed, "redirect_url": args.redirect_url,
                 "allow_repeats": args.allow_repeats, "same_processing": args.same_processing,
                 "serve_size": args.serve_size, "jpeg_quality": args.jpeg_quality,
                 "max_participants": args.max_participants}
    spec = load_spec(args.config, overrides)
    notes: list[str] = []
    engine = make_engine(args.db)
    try:
        study, token = create_study(engine, spec, notes)
    finally:
        engine.dispose()
    url = f"{args.base_url.rstrip('/')}/s/{study.name}"
    print(f"created study {study.name} ({study.protocol}, {len(spec.fake)} algorithms: {', '.join(spec.fake)})")
    for note in notes:
        print(note)
    print(f"served images: {processing_of(study).describe()}")
    print(f"admin token (shown once): {token}")
    print(f"participant URL: {url}")
    print(f"  MTurk:    {url}?workerId=...&assignmentId=...&hitId=...")
    print(f"  Prolific: {url}?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&STUDY_ID={{{{%STUDY_ID%}}}}&SESSION_ID={{{{%SESSION_ID%}}}}")
    return 0


def jpeg_quality(text: str) -> int:
    """``--jpeg-quality``: 1..95 (Pillow's documentation advises against values above 95)."""
    value = positive_int(text)
    if value > 95:
        raise argparse.ArgumentTypeError(f"{text} is out of range: give a JPEG quality from 1 to 95")
    return value


def _workers(text: str) -> int | str:
    """``--workers``: a number of processes or ``auto``."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of server processes (1 or more) or auto") from None


def _check_bind(host: str, port: int) -> None:
    """Bind HOST:PORT once and let it go, so that a port in use or a host that cannot be bound is one line before
    anything claims the server is listening (uvicorn binds again right after)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or "
                            "--host, or stop the server that holds it") from None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from p2p_eval.study.server import auto_workers, create_app
    from p2p_eval.study.store import open_existing

    engine, names = open_existing(args.db)
    _check_bind(args.host, args.port)
    if args.workers == "auto":
        args.workers = auto_workers(engine.dialect.name)
    base = f"http://{args.host}:{args.port}"
    print(f"p2p-eval study serve: {engine.url.render_as_string(hide_password=True)}, {len(names)} "
          f"stud{'y' if len(names) == 1 else 'ies'}, {args.workers} server process"
          f"{'' if args.workers == 1 else 'es'}", flush=True)
    for name in names:
        print(f"  {name}: participant page {base}/s/{name}", flush=True)
        print(f"  {name}: admin (Authorization: Bearer <study token>) {base}/api/admin/studies/{name}/progress, "
              f"{base}/api/admin/studies/{name}/export?format=csv", flush=True)
    print(f"listening on {base} (Ctrl-C to stop)", flush=True)
    if args.workers == 1:
        uvicorn.run(create_app(engine), host=args.host, port=args.port, log_level="info", access_log=False,
                    timeout_keep_alive=30)
        return 0
    # each process builds its own app (engine, caches) from the URL: uvicorn starts them from the factory
    os.environ["P2P_STUDY_DB"] = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    uvicorn.run("p2p_eval.study.server:app_from_env", factory=True, workers=args.workers, host=args.host,
                port=args.port, log_level="info", access_log=False, timeout_keep_alive=30)
    return 0


def _report(args: argparse.Namespace) -> int:
    from p2p_eval.study.analysis import format_report, report
    from p2p_eval.study.store import make_engine

    result = report(make_engine(args.db, create=False), args.study, json_out=args.json, csv_out=args.csv, n_boot=args.bootstrap, seed=args.seed)
    if args.format == "paper":
        from p2p_eval.study.analysis import format_paper

        print(format_paper(result))
    else:
        print(format_report(result))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from p2p_eval.study.simulate import (FoolingPopulation, PsychometricPopulation, format_result, parse_ms,
                                         parse_rates, parse_sd, simulate)
    from p2p_eval.study.store import open_existing

    if (args.fooling is None) == (args.threshold_ms is None):
        raise UserError("give --fooling (2afc, sequential, single, hype-inf) or --threshold-ms (hype-time), not both")
    if args.threshold_ms is not None:
        population = PsychometricPopulation(parse_ms(args.threshold_ms, "--threshold-ms"), spread_ms=args.spread_ms,
                                            lapse=args.lapse, sd_between_ms=args.sd_between_ms)
    else:
        population = FoolingPopulation(parse_rates(args.fooling, "--fooling"), lapse=args.lapse,
                                       sd_between=parse_sd(args.sd_between),
                                       false_alarm=parse_rates(args.false_alarm, "--false-alarm") or None)
    engine, _ = open_existing(args.db)
    try:
        result = simulate(engine, args.study, args.participants, population, seed=args.seed, images=args.images,
                          progress=not args.quiet)
    finally:
        engine.dispose()
    print(format_result(result))
    if not args.images:
        print("--no-images: these answers were given without fetching the images; the server stored them as unseen "
              "and `study report` leaves them out of the scores")
    print(f"report: p2p-eval study report --db {args.db} --study {args.study} --format paper")
    return 0


def _power(args: argparse.Namespace) -> int:
    import shlex

    from p2p_eval.study.power import format_table, parse_counts, parse_fooling, power_curve, write_outputs

    result = power_curve(parse_fooling(args.fooling), args.trials, parse_counts(args.participants),
                         sd_between=args.sd_between, sims=args.sims, n_boot=args.bootstrap, seed=args.seed,
                         half_width=args.half_width, progress=not args.quiet)
    print(format_table(result))
    if args.out is not None:
        flags = ["--fooling", args.fooling, "--trials", args.trials, "--sd-between", args.sd_between, "--participants",
                 args.participants] + (["--half-width", args.half_width] if args.half_width is not None else []) + \
                ["--sims", args.sims, "--bootstrap", args.bootstrap, "--seed", args.seed, "--out", args.out]
        command = "p2p-eval study power " + " ".join(shlex.quote(str(f)) for f in flags)
        for path in write_outputs(result, args.out, command):
            print(f"wrote {path}")
    return 0
