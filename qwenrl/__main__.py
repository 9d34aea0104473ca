from qwenrl.cli import main

main()
