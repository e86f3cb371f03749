import sys

try:
    from dfbench.cli import main
except KeyboardInterrupt:  # Ctrl-C while the CLI starts: a message and 130, never a traceback
    sys.stderr.write("Interrupted while dfbench was starting; nothing was written.\n")
    sys.exit(130)

main()
