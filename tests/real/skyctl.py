"""Drive the state of a real SkyPilot API server through SkyPilot's own Python API.

Run with the interpreter of the venv that serves the API server, and with the same
HOME, SKY_RUNTIME_DIR and SKYPILOT_GLOBAL_CONFIG, so that it writes the server's own
state database. No cloud is contacted: the clusters are records with an AWS handle.

    python skyctl.py catalog
    python skyctl.py create NAME [--status UP|INIT|STOPPED] [--autostop MIN] [--down]
                                 [--instance-type m6i.large] [--region us-west-2]
    python skyctl.py set-status NAME STATUS
    python skyctl.py set-autostop NAME MINUTES [--down]
    python skyctl.py remove NAME
"""
import argparse
import os
import sys

CATALOG_HEADER = ('InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,'
                  'GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n')
CATALOG_ROWS = [
    'm6i.large,,,2.0,8.0,,0.096,0.0374,us-west-2,us-west-2a\n',
    'm6i.xlarge,,,4.0,16.0,,0.192,0.0748,us-west-2,us-west-2a\n',
    'm5.large,,,2.0,8.0,,0.096,0.035,us-west-2,us-west-2b\n',
    'm6i.large,,,2.0,8.0,,0.107,0.04,us-east-1,us-east-1a\n',
]


def write_catalog() -> str:
    """Write the offline AWS catalog SkyPilot needs to build AWS Resources."""
    from sky.catalog import common as catalog_common
    path = catalog_common.get_catalog_path('aws/vms.csv')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Rows another writer put in a catalog of the same columns stay (a test may price
    # instance types of its own there); a catalog of other columns is replaced.
    rows = []
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            lines = f.readlines()
        if lines and lines[0] == CATALOG_HEADER:
            rows = lines[1:]
    rows += [r for r in CATALOG_ROWS if r not in rows]
    with open(path, 'w', encoding='utf-8') as f:
        f.write(CATALOG_HEADER)
        f.writelines(rows)
    return path


def create(args) -> None:
    write_catalog()
    import sky
    from sky import global_user_state
    from sky.backends import cloud_vm_ray_backend
    from sky.utils import status_lib
    if args.user:
        # Owned by this person, as a launch through the gateway would be: SkyPilot's id of
        # a name from its identity header is md5(name)[:8].
        import hashlib
        from sky import models
        from sky.utils import common_utils
        owner = models.User(id=hashlib.md5(args.user.encode()).hexdigest()[:8], name=args.user)
        # SkyPilot lists a cluster only with its user known (as the gateway's first request
        # of that person makes it).
        global_user_state.add_or_update_user(owner)
        common_utils.set_current_user(owner)
    res = sky.Resources(infra=f'aws/{args.region}', instance_type=args.instance_type)
    handle = cloud_vm_ray_backend.CloudVmRayResourceHandle(
        cluster_name=args.name,
        cluster_name_on_cloud=f'{args.name}-oncloud',
        cluster_yaml=None,
        launched_nodes=args.nodes,
        launched_resources=res)
    global_user_state.add_or_update_cluster(args.name, handle, {res},
                                            ready=args.status == 'UP')
    if args.status != 'UP':
        global_user_state.set_cluster_status(args.name,
                                             status_lib.ClusterStatus[args.status])
    global_user_state.set_cluster_autostop_value(args.name, args.autostop, args.down)


def set_status(args) -> None:
    from sky import global_user_state
    from sky.utils import status_lib
    global_user_state.set_cluster_status(args.name, status_lib.ClusterStatus[args.status])


def set_autostop(args) -> None:
    from sky import global_user_state
    global_user_state.set_cluster_autostop_value(args.name, args.minutes, args.down)


def remove(args) -> None:
    from sky import global_user_state
    global_user_state.remove_cluster(args.name, terminate=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest='cmd', required=True)
    sub.add_parser('catalog')
    c = sub.add_parser('create')
    c.add_argument('name')
    c.add_argument('--status', default='UP', choices=['UP', 'INIT', 'STOPPED'])
    c.add_argument('--autostop', type=int, default=-1)
    c.add_argument('--down', action='store_true')
    c.add_argument('--instance-type', default='m6i.large')
    c.add_argument('--region', default='us-west-2')
    c.add_argument('--nodes', type=int, default=1)
    c.add_argument('--user', default=None, help='owner (a name as the gateway sends it)')
    s = sub.add_parser('set-status')
    s.add_argument('name')
    s.add_argument('status', choices=['UP', 'INIT', 'STOPPED'])
    a = sub.add_parser('set-autostop')
    a.add_argument('name')
    a.add_argument('minutes', type=int)
    a.add_argument('--down', action='store_true')
    r = sub.add_parser('remove')
    r.add_argument('name')
    args = parser.parse_args()
    if args.cmd == 'catalog':
        print(write_catalog())
    elif args.cmd == 'create':
        create(args)
    elif args.cmd == 'set-status':
        set_status(args)
    elif args.cmd == 'set-autostop':
        set_autostop(args)
    elif args.cmd == 'remove':
        remove(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
