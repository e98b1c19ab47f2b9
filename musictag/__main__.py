from musictag.cli import main

main()
