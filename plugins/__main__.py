"""`python -m voicewatch.plugins PLUGIN ARGS…`: run one source plugin as `voicewatch source` does,
without importing the core's command line (which loads torch): sources are many small processes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from voicewatch.plugins import registry


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voicewatch.plugins", description="run a source plugin")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    plugins = parser.add_subparsers(dest="plugin_name", required=True, metavar="PLUGIN")
    for name in sorted(registry.available()):
        try:
            plugin = registry.load(name)
        except registry.PluginError:
            continue
        sub = plugins.add_parser(name, help=plugin.help, description=plugin.help)
        plugin.add_arguments(sub)
        sub.set_defaults(plugin=plugin)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.plugin.run(args))
    except (ValueError, TimeoutError) as exc:
        sys.stderr.write(f"voicewatch source {args.plugin_name}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
