#!/usr/bin/env python3
"""Print the JSON schema of SkyPilot's config.yaml, as the installed SkyPilot defines it.

Run with the Python interpreter of the SkyPilot in use, e.g.
    "$SKYPILOT_VENV/bin/python" scripts/sky-schema.py > sky-config.schema.json

The schema comes from SkyPilot itself (sky.utils.schemas.get_config_schema), so it
always matches the installed version. It is the schema the API server enforces:
  * server mode with plugins loaded (no plugins configured), where SkyPilot sets
    additionalProperties to false everywhere, so an unknown key is an error;
  * "$schema" says draft-07, the draft SkyPilot validates with (its validator extends
    jsonschema.Draft7Validator), whatever the schema's own "$schema" claims;
  * SkyPilot's two custom keywords, "case_insensitive_enum" and "case_sensitive_enum",
    stay in the schema; the validator in skypilot-host implements them.
"""
import json
import os
import sys


def main() -> int:
    # The API server runs with this variable set; some parts of the schema are strict
    # only on the server.
    os.environ.setdefault('IS_SKYPILOT_SERVER', '1')
    try:
        import sky  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
        from sky.server import plugins  # pylint: disable=import-outside-toplevel
        from sky.utils import schemas  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        print(f'sky-schema.py: cannot import SkyPilot with {sys.executable}: {e}',
              file=sys.stderr)
        return 1
    # The state of an API server that has finished loading its (zero) plugins: the
    # schema is strict from then on.
    if not hasattr(plugins, '_plugins_loaded'):
        print('sky-schema.py: this SkyPilot has no sky.server.plugins._plugins_loaded; '
              'the strict server schema cannot be selected', file=sys.stderr)
        return 1
    plugins._plugins_loaded = True  # pylint: disable=protected-access
    schema = schemas.get_config_schema()
    schema['$schema'] = 'http://json-schema.org/draft-07/schema#'
    version = getattr(sky, '__version__', 'unknown')
    schema['$comment'] = f'SkyPilot {version} config.yaml schema (server mode)'
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
