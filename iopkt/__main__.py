from iopkt.cmd.cli import main

main()
