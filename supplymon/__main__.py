from supplymon.cli import main

raise SystemExit(main())
