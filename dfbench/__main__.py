import sys

from dfbench.app import interrupts

interrupts.install()  # from the first moment: Ctrl-C or SIGTERM while starting gets a message too
try:
    from dfbench.app.cli import main
except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while the CLI starts: a message, never a traceback
    sys.stderr.write(f"{interrupts.what(exc)} while dfbench was starting; nothing was written.\n")
    interrupts.exit_now(interrupts.exit_status(exc))

main()
