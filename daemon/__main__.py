from voicewatch.cli import main

raise SystemExit(main())
