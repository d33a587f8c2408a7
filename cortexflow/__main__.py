from cortexflow.cli import main

raise SystemExit(main())
