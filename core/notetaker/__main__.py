from notetaker.cli import main

main()
