from acdfuse.cli import main

raise SystemExit(main())
