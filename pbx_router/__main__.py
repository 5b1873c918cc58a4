from pbx_router.cli import main

raise SystemExit(main())
