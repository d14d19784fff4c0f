"""Applies SkyPilot's own admin-policy code to a task, as SkyPilot's API server does.

    python policy_apply.py REQUEST_NAME TASK_YAML_FILE OUT_JSON

SKYPILOT_GLOBAL_CONFIG names a config whose `admin_policy` is the policy's URL; HOME and
SKY_RUNTIME_DIR hold SkyPilot's state (its catalog). Writes one JSON object to OUT_JSON
(SkyPilot logs on stdout):
{"tasks": [<each mutated task's YAML config>], "config": <the config SkyPilot keeps>},
or {"rejected": <the message SkyPilot shows>} when the policy refuses the request. Any
other failure (the policy unreachable, an answer SkyPilot cannot decode) is an exception
and a non-zero exit.
"""
import json
import sys


def main() -> None:
    from sky import exceptions
    from sky import task as task_lib
    from sky.server.requests import request_names
    from sky.utils import admin_policy_utils
    from sky.utils import yaml_utils

    name, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(path, encoding='utf-8') as f:
        config = yaml_utils.read_yaml_all_str(f.read())[0]
    task = task_lib.Task.from_yaml_config(config)
    try:
        dag, mutated_config = admin_policy_utils.apply(
            task, request_names.AdminPolicyRequestName(name), at_client_side=False)
    except exceptions.UserRequestRejectedByPolicy as e:
        result = {'rejected': str(e)}
    else:
        result = {'tasks': [t.to_yaml_config() for t in dag.tasks],
                  'config': dict(mutated_config)}
    with open(out, 'w', encoding='utf-8') as f:
        json.dump(result, f, default=str)


if __name__ == '__main__':
    main()
