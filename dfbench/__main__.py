from dfbench.cli import main

main()
