from cifar_search.cli.main import main

raise SystemExit(main())
