from nextscale.cli import main

raise SystemExit(main())
