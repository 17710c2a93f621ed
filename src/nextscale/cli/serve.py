"""Serve a web demo in the browser: class -> image, text -> image and zero-shot editing tabs (gradio).

Examples:
    nextscale serve                                    # the bundled models at http://127.0.0.1:7860
    nextscale serve --model var-d16/ --no-text         # a converted VAR model; no text tab
    nextscale serve --text-model star-256/ --no-class  # a text model alone
    nextscale serve --text-model star-256/ --device cuda --dtype auto --max-images 16
    nextscale serve --host 0.0.0.0 --port 8080         # reachable from other machines (no login: mind who can)

Needs the demo extra: pip install 'nextscale[demo]'; the bundled text model also needs the text extra (pip install
'nextscale[text]'), without which the text tabs are left out with a note. The page has four tabs (the text ones with
a text model, the class ones unless --no-class; no Edit tab for the raster baseline, which cannot edit):
  Class -> image   pick classes by name; a labelled grid, one row per class, one column per image.
  Text -> image    one prompt per line (and a negative prompt); a grid, one row per prompt.
  Edit             upload an image (the bundled model starts with a real test sneaker), set a box with the
                   y0 x0 y1 x1 sliders (fractions, as `nextscale edit --box`), inpaint or outpaint it towards
                   a class, or extend it (shrink the image into the middle and generate a frame around it, as
                   `nextscale edit --extend`); shows the input, the region and the results side by side, and
                   below them each result pasted back into the upload at its own size and mode (a transparent
                   PNG keeps its alpha), as `nextscale edit --paste-back` writes it.
  Edit with text   the same with the text model, towards a prompt (the whole edited picture's caption; the
                   bundled scene model starts with a real held-out scene and a bag asked for in its top left).
Every tab has the sampling knobs of `nextscale sample` (seed, cfg, top-k, top-p, temperature, smooth), starting
at the model's recommended settings; the status line says how long it took and in which precision. Requests
run one at a time and ask for at most --max-images images; uploads may be up to 100 MB, and uploads and results
are deleted from gradio's cache a day after they were made. The server runs offline (no analytics, no share
link); Ctrl-C (or SIGTERM) stops it.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from nextscale.cli.common import add_dtype_argument, load_pipeline

# The largest upload the server takes (gradio's default is none: anyone who reaches the port could fill the disk,
# since gradio keeps every upload in its cache). Far above a photo, or a 16-bit PNG at Pillow's pixel limit.
MAX_UPLOAD = "100mb"
# The --host values (IPv6 in brackets, as printed) that listen on every address of the machine.
EVERY_ADDRESS = ("0.0.0.0", "[::]")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="class-conditional pipeline folder, a `nextscale train` run directory (the EMA weights of its newest "
        "checkpoint), or bundled:fashion-mnist (the default)",
    )
    text = parser.add_mutually_exclusive_group()
    text.add_argument(
        "--text-model",
        type=Path,
        default=None,
        help="text-to-image pipeline folder for the text tab, a `nextscale train` run directory of a text model, or "
        "bundled:scenes (the default)",
    )
    text.add_argument("--no-text", action="store_true", help="no text tab (and no text model in memory)")
    parser.add_argument(
        "--no-class",
        action="store_true",
        help="no class or edit tab (and no class model in memory): a text model alone",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default: 7860)")
    parser.add_argument(
        "--max-images", type=int, default=64, help="the most images one request may ask for (default: 64)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    add_dtype_argument(parser)


def require_gradio() -> None:
    """Fail with one line, before any model is loaded, when the optional gradio is missing."""
    from nextscale.cli import CommandError

    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise CommandError(
            f"the web demo needs gradio, which is not installed ({err}); install it with: pip install 'nextscale[demo]'"
        ) from err


def check_address(host: str, port: int) -> None:
    """Bind (host, port) for a moment, as the server will (asyncio's create_server: every address the host resolves
    to, with SO_REUSEADDR), so that a busy port or an address of another machine fails in one line that names the
    cause, before the models load; gradio would print the URL first and then blame the port for both."""
    from nextscale.cli import CommandError

    def refuse(err: OSError) -> CommandError:
        if err.errno == errno.EADDRINUSE:
            fix = "choose another --port"
        elif err.errno in (errno.EADDRNOTAVAIL, socket.EAI_NONAME):
            fix = "give a --host that is an address of this machine (127.0.0.1 for this machine only, 0.0.0.0 for all)"
        elif err.errno == errno.EACCES:
            fix = "choose a --port above 1023"
        else:
            fix = "choose another --port, or a --host that is an address of this machine"
        return CommandError(f"cannot serve at {host}:{port} ({(err.strerror or str(err)).lower()}); {fix}")

    bare_host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1], as in a URL
    try:
        addresses = socket.getaddrinfo(bare_host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:  # a name that does not resolve
        raise refuse(err) from err
    bound, unavailable = False, None
    for family, kind, protocol, _, address in addresses:
        try:
            probe = socket.socket(family, kind, protocol)
        except OSError:  # a family this machine lacks (no IPv6): asyncio skips it too
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio: the IPv6 socket does not also claim the IPv4 port
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as err:
                if err.errno != errno.EADDRNOTAVAIL:
                    raise refuse(err) from err
                unavailable = err  # asyncio skips such an address as long as another one binds
            else:
                bound = True
    if not bound:
        raise refuse(unavailable or OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL)))


def load_served_pipeline(args: argparse.Namespace, model: Path | None, text: bool):
    """The class (``text=False``) or text model through the CLI's one loader (device check, dtype, bundled default)."""
    chosen = argparse.Namespace(
        model=model,
        device=args.device,
        dtype=args.dtype,
        cuda_graphs=args.cuda_graphs,
        fused_kernels=args.fused_kernels,
        prompt=[] if text else None,  # load_pipeline picks the bundled text model when a prompt is expected
    )
    pipe = load_pipeline(chosen)
    if pipe.is_text_conditional != text:
        flag, kind = ("--text-model", "text-to-image") if text else ("--model", "class-conditional")
        raise ValueError(f"{flag} {model or 'bundled'} is not a {kind} model; give a {kind} pipeline folder")
    if text and pipe.text_encoder is None:  # every typed prompt would fail: say so before serving
        raise ValueError(
            f"--text-model {model} has no text encoder, and the web demo encodes typed prompts: convert it again "
            "with --text-encoder DIR, or serve without it (--no-text)"
        )
    return pipe


def load_default_text_pipeline(args: argparse.Namespace, has_class_tabs: bool):
    """The text model; the bundled one (no --text-model) is left out, with a note, when the text extra is not installed
    and the class tabs have something to serve: the demo extra alone serves those."""
    if args.text_model is not None or not has_class_tabs:
        return load_served_pipeline(args, args.text_model, text=True)
    from nextscale.text.loading import default_text_encoder_path

    try:
        default_text_encoder_path()  # the bundled text model's encoder: a package of the text extra
    except FileNotFoundError as err:
        return without_text_tabs(err)
    try:
        return load_served_pipeline(args, None, text=True)
    except ImportError as err:  # transformers, the text extra's other package
        return without_text_tabs(err)


def without_text_tabs(reason: Exception) -> None:
    print(f"note: no text tabs ({reason}); --no-text leaves them out without this note", file=sys.stderr)


def stop_on_terminate(signum: int, frame) -> None:
    """SIGTERM (``kill``, systemd, ``docker stop``) as Ctrl-C: gradio's wait then closes the server and says so, where
    the default ended the process mid-request, without "web demo stopped" and with no clean-up."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    if args.max_images < 1:
        raise ValueError(f"--max-images must be at least 1, got {args.max_images}")
    if not args.host.strip():  # gradio would serve 127.0.0.1 after check_address probed every address
        raise ValueError("--host is empty: give an address, 127.0.0.1 for this machine only or 0.0.0.0 for all")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    if args.no_class and (args.no_text or args.model is not None):
        other = "--no-text" if args.no_text else "--model"
        raise ValueError(f"--no-class with {other} leaves nothing to serve; drop one of them")
    # gradio reads this when imported: no usage reports or version checks from a local demo
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # gradio polls its own server with httpx at start-up; those requests say nothing to the user
    logging.getLogger("httpx").setLevel(logging.WARNING)
    require_gradio()
    check_address(args.host, args.port)  # before the models load: a busy port should not cost a minute's wait
    class_pipeline = None if args.no_class else load_served_pipeline(args, args.model, text=False)
    text_pipeline = None if args.no_text else load_default_text_pipeline(args, class_pipeline is not None)

    from nextscale.cli.web_app import build_app

    app = build_app(class_pipeline, text_pipeline, args.max_images)
    # an IPv6 literal goes in brackets, as in a URL: gradio builds its own URL from it and fails on a bare "::1"
    host = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
    print(f"starting the web demo at http://{host}:{args.port} (Ctrl-C stops it)", flush=True)
    if host in EVERY_ADDRESS:  # not an address a browser should be given (some refuse it)
        print(
            f"that is every address of this machine: open http://127.0.0.1:{args.port} here, or this machine's own "
            "address from others; there is no login, so anyone who can reach the port can use it",
            flush=True,
        )
    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers can only be set there
    previous = signal.signal(signal.SIGTERM, stop_on_terminate) if main_thread else None
    try:
        # blocks until Ctrl-C (or SIGTERM)
        app.launch(server_name=host, server_port=args.port, share=False, quiet=True, max_file_size=MAX_UPLOAD)
    except KeyboardInterrupt:  # Ctrl-C before gradio's own wait (which handles it) began
        app.close()
    except OSError as err:  # taken since check_address; gradio's message names its launch() arguments, not flags
        reason = str(err).split(". ")[0]
        raise OSError(f"cannot serve at {args.host}:{args.port} ({reason}); choose another --port or --host") from err
    finally:
        if main_thread:  # None: a handler set outside Python, which cannot be put back; the default then
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    print("web demo stopped", flush=True)
    return 0
