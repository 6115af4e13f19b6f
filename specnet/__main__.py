from specnet._cli.main import main

raise SystemExit(main())
