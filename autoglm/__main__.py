from autoglm.cli import main

main()
