"""The demo's full-screen terminal view (prompt_toolkit): the driver's screen in a box, the
receipt's link, what the commands answered, a status line and the prompt.

The view is redrawn when something it shows changes: a new frame from the kiosk, an answer,
or the status line (checked a few times a second); prompt_toolkit then writes only the cells
that differ, so what is being typed on the prompt is never disturbed. Ctrl-C and Ctrl-D leave.
"""

from __future__ import annotations

import asyncio

from prompt_toolkit.application import Application, get_app
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.completion import NestedCompleter
from prompt_toolkit.data_structures import Point
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import ConditionalContainer, HSplit, Layout, Window
from prompt_toolkit.layout.controls import FormattedTextControl
from prompt_toolkit.layout.dimension import Dimension
from prompt_toolkit.styles import Style
from prompt_toolkit.widgets import Frame as Box
from prompt_toolkit.widgets import TextArea

from hardware.ports import Frame, Tone
from launcher.demo import DemoKiosk
from launcher.demo_commands import VERBS

STATUS_CHECK_S = 0.25  # how often the status line (timers, clock) is compared for a change

STYLE = Style.from_dict(
    {
        "screen.title": "bold",
        "screen.error": "bold fg:ansired",
        "screen.ok": "bold fg:ansigreen",
        "field": "bold",
        "receipt": "fg:ansicyan",
        "status": "reverse",
        "prompt": "bold",
    }
)
_TONE_STYLE = {Tone.ERROR: "class:screen.error", Tone.OK: "class:screen.ok"}


def screen_text(frame: Frame | None) -> StyleAndTextTuples:
    """The driver's screen as styled text: title, lines, then `label: value` fields. Nothing
    is cut: long lines wrap in the window."""
    if frame is None:
        return [("", "starting ...")]
    title_style = _TONE_STYLE.get(frame.tone, "class:screen.title")
    out: StyleAndTextTuples = [(title_style, frame.title.upper()), ("", "\n")]
    for line in frame.lines:
        out += [("", "\n" + line)]
    if frame.fields:
        out += [("", "\n")]
        width = max(len(label) for label, _ in frame.fields)
        for label, value in frame.fields:
            out += [("", f"\n{label + ':':<{width + 1}} "), ("class:field", value)]
    return out


def _completer(cards: list[str]) -> NestedCompleter:
    table: dict[str, object] = {}
    for verb in VERBS:
        if verb.takes_card:
            table[verb.name] = dict.fromkeys(cards)
        elif verb.choices:
            table[verb.name] = dict.fromkeys(verb.choices)
        else:
            table[verb.name] = None
    return NestedCompleter.from_nested_dict(table)


def build_app(kiosk: DemoKiosk) -> Application[None]:
    """The full-screen application over `kiosk` (not yet running)."""

    def screen() -> StyleAndTextTuples:
        frame, _, _ = kiosk.snapshot()
        return screen_text(frame)

    def receipt() -> StyleAndTextTuples:
        _, link, _ = kiosk.snapshot()
        return [("class:receipt", f"receipt link: {link}")] if link else []

    def has_receipt() -> bool:
        return kiosk.snapshot()[1] is not None

    def messages() -> str:
        return "\n".join(kiosk.snapshot()[2])

    def last_message() -> Point:
        # The window scrolls to keep this "cursor" visible: the newest answer stays in view.
        lines = kiosk.snapshot()[2]
        return Point(x=0, y=max(0, len(lines) - 1))

    def status() -> StyleAndTextTuples:
        return [("class:status", " " + kiosk.status_line())]

    def accept(buffer: Buffer) -> bool:
        line = buffer.text
        if line.strip():
            kiosk.say("> " + line.strip())
        if not kiosk.handle(line):
            get_app().exit()
        return False  # clear the prompt; the line is in the history (up arrow)

    prompt = TextArea(
        height=1,
        prompt=[("class:prompt", "> ")],
        multiline=False,
        wrap_lines=False,
        history=InMemoryHistory(),
        completer=_completer(sorted(kiosk.profiles)),
        complete_while_typing=False,
        accept_handler=accept,
    )
    keys = KeyBindings()

    @keys.add("c-c")
    @keys.add("c-d")
    def _leave(event: KeyPressEvent) -> None:
        event.app.exit()

    body = HSplit(
        [
            Box(
                Window(FormattedTextControl(screen), wrap_lines=True, dont_extend_height=True),
                title="driver's screen",
            ),
            ConditionalContainer(
                Window(FormattedTextControl(receipt), wrap_lines=True, dont_extend_height=True),
                filter=Condition(has_receipt),
            ),
            Window(
                FormattedTextControl(messages, get_cursor_position=last_message),
                wrap_lines=True,
                # The screen box takes what it needs first; the answers get the rest.
                height=Dimension(min=3, preferred=3, weight=1),
            ),
            Window(
                FormattedTextControl(status),
                wrap_lines=True,
                height=Dimension(min=1, max=2),
                style="class:status",
            ),
            prompt,
        ]
    )
    app: Application[None] = Application(
        layout=Layout(body, focused_element=prompt),
        key_bindings=keys,
        style=STYLE,
        full_screen=True,
        mouse_support=False,
    )

    async def watch_status() -> None:
        last = ""
        while True:
            await asyncio.sleep(STATUS_CHECK_S)
            line = kiosk.status_line()
            if line != last:
                last = line
                app.invalidate()

    def on_change() -> None:
        app.invalidate()  # thread-safe: device threads call this

    kiosk.on_change = on_change

    def start_watching() -> None:
        app.create_background_task(watch_status())

    app.pre_run_callables.append(start_watching)
    return app


def run_screen(kiosk: DemoKiosk) -> None:
    """Run the view until the person leaves (quit, Ctrl-C, Ctrl-D)."""
    build_app(kiosk).run()
    kiosk.on_change = lambda: None
