"""Drive the state of a real SkyPilot API server through SkyPilot's own Python API.

Run with the interpreter of the venv that serves the API server, and with the same
HOME, SKY_RUNTIME_DIR and SKYPILOT_GLOBAL_CONFIG, so that it writes the server's own
state database. No cloud is contacted: the clusters are records with an AWS handle.

With --ec2, a cluster is also an instance in the EC2 API at AWS_ENDPOINT_URL (the demo's
local EC2 emulator), tagged as SkyPilot tags its own, with the provision YAML SkyPilot
keeps for a cluster it launched: SkyPilot's stop and down then act on that instance. The
catalog then names zones by their ids, as AWS's own catalog does (SkyPilot maps them to the
account's zone names once it has an AWS identity).

    python skyctl.py catalog [--zone-ids]
    python skyctl.py create NAME [--status UP|INIT|STOPPED] [--autostop MIN] [--down]
                                 [--instance-type m6i.large] [--region us-west-2] [--ec2]
    python skyctl.py set-status NAME STATUS
    python skyctl.py set-autostop NAME MINUTES [--down]
    python skyctl.py remove NAME
    python skyctl.py keys USER          SkyPilot's SSH key pair of USER (made as a launch would)
    python skyctl.py job NAME --user U
                                        a managed job's record (PENDING), as `sky jobs launch` makes;
                                        prints its id
    python skyctl.py job-state ID STATE [--recoveries N] [--reason TEXT] [--cluster NAME]
                                        moves job ID on as its controller would (STARTING, RUNNING,
                                        RECOVERING, SUCCEEDED, FAILED*, CANCELLED), through
                                        SkyPilot's own state functions
    python skyctl.py jobs-bulk N --user U   N managed jobs (a benchmark's queue): every 10th running
                                        on a cluster, every 10th failed, the rest succeeded
    python skyctl.py service NAME --user U [--replicas N]
                                        a SkyServe service's record as `sky serve up` makes it
                                        (CONTROLLER_INIT, version 1, a load balancer port)
    python skyctl.py replica NAME ID STATE [--cluster C] [--spot]
                                        replica ID of service NAME in STATE (PENDING, PROVISIONING,
                                        STARTING, READY, NOT_READY, FAILED, FAILED_PROBING,
                                        PREEMPTED, SHUTTING_DOWN) as its replica manager records it;
                                        the service's status then follows as its controller sets it
    python skyctl.py service-state NAME STATUS
                                        sets a service's status (CONTROLLER_FAILED, SHUTTING_DOWN, ...)
    python skyctl.py service-remove NAME   the service's records, gone as after `sky serve down`
    python skyctl.py dump               JSON: clusters (handle digests), users, SSH keys, jobs
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
# The zone ids of the zones above in the EC2 emulator's account (AWS's catalog names zones
# by id; SkyPilot drops a row whose id the account does not have).
ZONE_IDS = {'us-west-2a': 'usw2-az2', 'us-west-2b': 'usw2-az1', 'us-east-1a': 'use1-az6'}


def write_catalog(zone_ids: bool = False) -> str:
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
    ours = CATALOG_ROWS
    if zone_ids:
        ours = [r.rsplit(',', 1)[0] + ',' + ZONE_IDS[r.rsplit(',', 1)[1].strip()] + '\n'
                for r in CATALOG_ROWS]
    rows += [r for r in ours if r not in rows]
    with open(path, 'w', encoding='utf-8') as f:
        f.write(CATALOG_HEADER)
        f.writelines(rows)
    return path


def ec2_instance(name_on_cloud: str, region: str, instance_type: str, stopped: bool) -> str:
    """Runs the head instance of a cluster in the EC2 API at AWS_ENDPOINT_URL."""
    if not os.environ.get('AWS_ENDPOINT_URL'):
        sys.exit('skyctl.py create --ec2: AWS_ENDPOINT_URL is not set (expected the URL of '
                 'an EC2 API such as the demo\'s emulator); refusing to create an instance in AWS')
    import boto3
    ec2 = boto3.client('ec2', region_name=region)
    tags = [{'Key': 'ray-cluster-name', 'Value': name_on_cloud},
            {'Key': 'skypilot-cluster-name', 'Value': name_on_cloud},
            {'Key': 'ray-node-kind', 'Value': 'head'},
            {'Key': 'Name', 'Value': f'sky-{name_on_cloud}-head'}]
    # An image id of the emulator's own list (it checks ids against it).
    image = ec2.describe_images(Owners=['amazon'])['Images'][0]['ImageId']
    reply = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1,
                              InstanceType=instance_type,
                              TagSpecifications=[{'ResourceType': 'instance', 'Tags': tags}])
    instance_id = reply['Instances'][0]['InstanceId']
    if stopped:
        ec2.stop_instances(InstanceIds=[instance_id])
    return instance_id


def provision_yaml(name_on_cloud: str, region: str, owner_hash: str) -> str:
    """The part of SkyPilot's provision YAML its stop, down and status read: the provider
    (region, security group) and the SSH login (the owner's key, at the path SkyPilot
    generates for them)."""
    from sky.utils import auth_utils
    key, _, _ = auth_utils.get_ssh_key_and_lock_path(owner_hash)
    return (f'cluster_name: {name_on_cloud}\n'
            'provider:\n'
            '  type: external\n'
            '  module: sky.provision.aws\n'
            f'  region: {region}\n'
            '  security_group:\n'
            f'    GroupName: sky-sg-{name_on_cloud}\n'
            'auth:\n'
            '  ssh_user: ubuntu\n'
            f'  ssh_private_key: {os.path.expanduser(key)}\n')


def create(args) -> None:
    write_catalog(zone_ids=args.ec2)
    import sky
    from sky import global_user_state
    from sky.backends import cloud_vm_ray_backend
    from sky.utils import common_utils
    from sky.utils import status_lib
    owner_hash = common_utils.get_user_hash()
    if args.user:
        # Owned by this person, as a launch through the gateway would be: SkyPilot's id of
        # a name from its identity header is md5(name)[:8].
        import hashlib
        from sky import models
        owner_hash = hashlib.md5(args.user.encode()).hexdigest()[:8]
        owner = models.User(id=owner_hash, name=args.user)
        # SkyPilot lists a cluster only with its user known (as the gateway's first request
        # of that person makes it).
        global_user_state.add_or_update_user(owner)
        common_utils.set_current_user(owner)
    res = sky.Resources(infra=f'aws/{args.region}', instance_type=args.instance_type)
    name_on_cloud = f'{args.name}-oncloud'
    cluster_yaml = None
    if args.ec2:
        instance = ec2_instance(name_on_cloud, args.region, args.instance_type,
                                stopped=args.status == 'STOPPED')
        global_user_state.set_cluster_yaml(
            args.name, provision_yaml(name_on_cloud, args.region, owner_hash))
        # SkyPilot finds a cluster's YAML by the file name of this path.
        cluster_yaml = os.path.expanduser(f'~/.sky/generated/{args.name}.yml')
        print(f'{args.name}: instance {instance} in the EC2 API at '
              f'{os.environ["AWS_ENDPOINT_URL"]}')
    handle = cloud_vm_ray_backend.CloudVmRayResourceHandle(
        cluster_name=args.name,
        cluster_name_on_cloud=name_on_cloud,
        cluster_yaml=cluster_yaml,
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


def user_hash(name: str) -> str:
    """SkyPilot's id of a name from its identity header: md5(name)[:8]."""
    import hashlib
    return hashlib.md5(name.encode()).hexdigest()[:8]


def keys(args) -> None:
    # SkyPilot makes a person's key pair at their first launch, for the user of the
    # request; outside a request that user is SKYPILOT_USER_ID.
    os.environ['SKYPILOT_USER_ID'] = user_hash(args.user)
    from sky import global_user_state
    from sky import models
    from sky.utils import auth_utils
    global_user_state.add_or_update_user(models.User(id=user_hash(args.user), name=args.user))
    private, _ = auth_utils.get_or_generate_keys()
    print(private)


def job(args) -> None:
    from sky import global_user_state
    from sky import models
    from sky.jobs import state
    # A launch through the API server records its user first; the queue names the user
    # from that record.
    global_user_state.add_or_update_user(models.User(id=user_hash(args.user), name=args.user))
    job_id = state.set_job_info_without_job_id(
        name=args.name, workspace='default', entrypoint=f'sky jobs launch -n {args.name}',
        pool=None, pool_hash=None, user_hash=user_hash(args.user))
    state.set_pending(job_id, 0, args.name, '1x[CPU:2]', '{}')
    print(job_id)


def job_state(args) -> None:
    """Moves a managed job on through SkyPilot's own state functions, in the order its
    controller calls them: PENDING -> STARTING -> RUNNING (-> RECOVERING -> RUNNING)* ->
    SUCCEEDED | FAILED* | CANCELLING -> CANCELLED."""
    import asyncio
    import time
    from sky.jobs import state

    async def callback(_status: str) -> None:
        return None

    job_id, target = args.id, args.state
    statuses = {s.value: s for s in state.ManagedJobStatus}
    if target not in statuses:
        sys.exit(f'skyctl.py job-state: unknown state {target!r}; expected one of '
                 f'{", ".join(sorted(statuses))}')

    async def run() -> None:
        now = time.time()
        current = state.get_status(job_id)
        if current is None:
            sys.exit(f'skyctl.py job-state: no managed job {job_id}')
        if current == state.ManagedJobStatus.PENDING and target != 'CANCELLED':
            await state.set_starting_async(job_id, 0, f'sky-{int(now)}', now, '1x[CPU:2]', {},
                                           callback)
        if args.cluster:
            state.set_current_cluster_name(job_id, args.cluster)
            state.set_job_infra(job_id, cloud='AWS', region='us-west-2', zone='us-west-2a')
        if target == 'STARTING':
            return
        if state.get_status(job_id) == state.ManagedJobStatus.STARTING:
            await state.set_started_async(job_id, 0, now, callback)
        for _ in range(args.recoveries):
            await state.set_recovering_async(job_id, 0, False, callback)
            await state.set_recovered_async(job_id, 0, time.time(), callback)
        if target == 'RECOVERING':
            await state.set_recovering_async(job_id, 0, False, callback)
        elif target == 'SUCCEEDED':
            await state.set_succeeded_async(job_id, 0, time.time(), callback)
        elif target.startswith('FAILED'):
            await state.set_failed_async(job_id, 0, statuses[target],
                                         args.reason or f'{target} (made by skyctl.py)',
                                         callback)
        elif target in ('CANCELLING', 'CANCELLED'):
            await state.set_cancelling_async(job_id, callback)
            if target == 'CANCELLED':
                await state.set_cancelled_async(job_id, callback)

    asyncio.run(run())
    print(state.get_status(job_id).value)


def jobs_bulk(args) -> None:
    """N managed jobs through the same state functions, in one process."""
    import asyncio
    import time
    from sky import global_user_state
    from sky import models
    from sky.jobs import state

    async def callback(_status: str) -> None:
        return None

    global_user_state.add_or_update_user(models.User(id=user_hash(args.user), name=args.user))

    async def run() -> None:
        for i in range(args.n):
            name = f'bench-{i:05d}'
            job_id = state.set_job_info_without_job_id(
                name=name, workspace='default', entrypoint=f'sky jobs launch -n {name}',
                pool=None, pool_hash=None, user_hash=user_hash(args.user))
            state.set_pending(job_id, 0, name, '1x[CPU:2]', '{}')
            now = time.time()
            await state.set_starting_async(job_id, 0, f'sky-{int(now)}', now, '1x[CPU:2]', {},
                                           callback)
            await state.set_started_async(job_id, 0, now, callback)
            if i % 10 == 0:
                state.set_current_cluster_name(job_id, f'{name}-1')
            elif i % 10 == 1:
                await state.set_failed_async(job_id, 0, state.ManagedJobStatus.FAILED,
                                             'exit 1 (benchmark)', callback)
            else:
                await state.set_succeeded_async(job_id, 0, time.time(), callback)

    asyncio.run(run())
    print(args.n)


def service(args) -> None:
    """A service's records as `sky serve up` leaves them once its controller started: the
    service row (sky/serve/service.py _start), its first version, its ports."""
    import socket
    import yaml
    from sky import global_user_state
    from sky import models
    from sky.serve import serve_state
    from sky.serve import service_spec
    global_user_state.add_or_update_user(models.User(id=user_hash(args.user), name=args.user))
    spec = service_spec.SkyServiceSpec(
        readiness_path='/health', initial_delay_seconds=1200, readiness_timeout_seconds=15,
        endpoint_probe_interval_seconds=10, lb_stream_timeout_seconds=300,
        min_replicas=args.replicas, max_replicas=None)
    added = serve_state.add_service(
        args.name, controller_job_id=0, policy=spec.autoscaling_policy_str(),
        requested_resources_str='1x[CPU:2]', load_balancing_policy=spec.load_balancing_policy,
        status=serve_state.ServiceStatus.CONTROLLER_INIT, tls_encrypted=False, pool=False,
        controller_pid=os.getpid(), entrypoint=f'sky serve up -n {args.name} service.yaml',
        controller_ip='127.0.0.1', user_hash=user_hash(args.user))
    if not added:
        sys.exit(f'skyctl.py service: service {args.name!r} exists already')
    task = {'name': args.name, 'service': {'readiness_probe': '/health',
                                           'replicas': args.replicas},
            'resources': {'cpus': 2, 'ports': 8080}, 'run': 'python -m http.server 8080'}
    serve_state.add_or_update_version(args.name, 1, spec, yaml.safe_dump(task))
    # A free port, as the controller picks its load balancer's; nothing listens on it
    # here, so SkyPilot's call to the controller's /autoscaler/info finds none.
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        lb_port = s.getsockname()[1]
    serve_state.set_service_load_balancer_port(args.name, lb_port)
    print(lb_port)


# What a replica's status property holds in each state (sky/serve/replica_managers.py
# ReplicaStatusProperty.to_replica_status).
REPLICA_STATES = {
    'PENDING': {},
    'PROVISIONING': {'sky_launch_status': 'RUNNING'},
    'STARTING': {'sky_launch_status': 'SUCCEEDED'},
    'READY': {'sky_launch_status': 'SUCCEEDED', 'first_ready_time': 'now',
              'service_ready_now': True},
    'NOT_READY': {'sky_launch_status': 'SUCCEEDED', 'first_ready_time': 'now'},
    'SHUTTING_DOWN': {'sky_launch_status': 'SUCCEEDED', 'sky_down_status': 'RUNNING'},
    'FAILED': {'sky_launch_status': 'SUCCEEDED', 'sky_down_status': 'SUCCEEDED',
               'user_app_failed': True},
    'FAILED_PROBING': {'sky_launch_status': 'SUCCEEDED', 'sky_down_status': 'SUCCEEDED',
                       'first_ready_time': 'now'},
    'PREEMPTED': {'sky_launch_status': 'SUCCEEDED', 'sky_down_status': 'SUCCEEDED',
                  'preempted': True},
}


def replica(args) -> None:
    """A replica in a given state, recorded as the replica manager records it; the
    service's status then follows from its replicas as the controller sets it
    (ServiceStatus.from_replica_statuses)."""
    import time
    from sky.serve import replica_managers
    from sky.serve import serve_state
    from sky.utils import common_utils
    if args.state not in REPLICA_STATES:
        sys.exit(f'skyctl.py replica: unknown state {args.state!r}; expected one of '
                 f'{", ".join(REPLICA_STATES)}')
    if serve_state.get_service_from_name(args.name) is None:
        sys.exit(f'skyctl.py replica: no service {args.name!r}')
    cluster = args.cluster or f'{args.name}-{args.id}'
    info = replica_managers.ReplicaInfo(args.id, cluster, '8080', args.spot, None, 1, None)
    for key, value in REPLICA_STATES[args.state].items():
        if key.endswith('_status'):
            value = common_utils.ProcessStatus[value]
        elif value == 'now':
            value = time.time()
        setattr(info.status_property, key, value)
    if info.status.value != args.state:
        sys.exit(f'skyctl.py replica: made {info.status.value}, not {args.state}')
    serve_state.add_or_update_replica(args.name, args.id, info)
    if args.state == 'READY' and serve_state.get_service_from_name(args.name)['uptime'] is None:
        # The replica manager records when the service first had a ready replica.
        serve_state.set_service_uptime(args.name, int(time.time()))
    statuses = [r.status for r in serve_state.get_replica_infos(args.name)]
    status = serve_state.ServiceStatus.from_replica_statuses(statuses)
    serve_state.set_service_status_and_active_versions(args.name, status, [1])
    print(status.value)


def service_state(args) -> None:
    from sky.serve import serve_state
    try:
        status = serve_state.ServiceStatus[args.status]
    except KeyError:
        sys.exit(f'skyctl.py service-state: unknown status {args.status!r}; expected one of '
                 f'{", ".join(s.value for s in serve_state.ServiceStatus)}')
    if serve_state.get_service_from_name(args.name) is None:
        sys.exit(f'skyctl.py service-state: no service {args.name!r}')
    serve_state.set_service_status_and_active_versions(args.name, status)
    print(status.value)


def service_remove(args) -> None:
    from sky.serve import serve_state
    serve_state.remove_service_completely(args.name)


def dump(_args) -> None:
    """What a restore must bring back, as JSON (handles as digests of their pickles)."""
    import hashlib
    import json
    from sky import global_user_state
    from sky.jobs import state
    import sqlalchemy
    engine = global_user_state.initialize_and_get_db()
    with engine.connect() as conn:
        raw = dict(conn.execute(sqlalchemy.text('SELECT name, handle FROM clusters')).all())
    clusters = []
    for r in global_user_state.get_clusters():
        clusters.append({
            'name': r['name'], 'status': str(r['status']), 'user_hash': r.get('user_hash'),
            'autostop': r.get('autostop'), 'to_down': r.get('to_down'),
            # The stored bytes: a pickle made anew may order a set differently.
            'handle': hashlib.sha256(raw[r['name']]).hexdigest(),
        })
    users = sorted((u.id, u.name) for u in global_user_state.get_all_users())
    jobs = []
    for j in state.get_managed_jobs_with_filters()[0]:
        jobs.append({k: j.get(k) for k in ('job_id', 'task_id', 'job_name', 'task_name',
                                           'status', 'user_hash', 'resources', 'workspace')})
    print(json.dumps({'clusters': sorted(clusters, key=lambda c: c['name']),
                      'users': users, 'jobs': jobs}, default=str, sort_keys=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest='cmd', required=True)
    cat = sub.add_parser('catalog')
    cat.add_argument('--zone-ids', action='store_true')
    c = sub.add_parser('create')
    c.add_argument('name')
    c.add_argument('--status', default='UP', choices=['UP', 'INIT', 'STOPPED'])
    c.add_argument('--autostop', type=int, default=-1)
    c.add_argument('--down', action='store_true')
    c.add_argument('--instance-type', default='m6i.large')
    c.add_argument('--region', default='us-west-2')
    c.add_argument('--nodes', type=int, default=1)
    c.add_argument('--user', default=None, help='owner (a name as the gateway sends it)')
    c.add_argument('--ec2', action='store_true',
                   help='also an instance in the EC2 API at AWS_ENDPOINT_URL')
    s = sub.add_parser('set-status')
    s.add_argument('name')
    s.add_argument('status', choices=['UP', 'INIT', 'STOPPED'])
    a = sub.add_parser('set-autostop')
    a.add_argument('name')
    a.add_argument('minutes', type=int)
    a.add_argument('--down', action='store_true')
    r = sub.add_parser('remove')
    r.add_argument('name')
    k = sub.add_parser('keys')
    k.add_argument('user')
    j = sub.add_parser('job')
    j.add_argument('name')
    j.add_argument('--user', required=True)
    jb = sub.add_parser('jobs-bulk')
    jb.add_argument('n', type=int)
    jb.add_argument('--user', required=True)
    js = sub.add_parser('job-state')
    js.add_argument('id', type=int)
    js.add_argument('state')
    js.add_argument('--recoveries', type=int, default=0)
    js.add_argument('--reason')
    js.add_argument('--cluster')
    sv = sub.add_parser('service')
    sv.add_argument('name')
    sv.add_argument('--user', required=True)
    sv.add_argument('--replicas', type=int, default=1)
    rp = sub.add_parser('replica')
    rp.add_argument('name')
    rp.add_argument('id', type=int)
    rp.add_argument('state')
    rp.add_argument('--cluster')
    rp.add_argument('--spot', action='store_true')
    ss = sub.add_parser('service-state')
    ss.add_argument('name')
    ss.add_argument('status')
    sr = sub.add_parser('service-remove')
    sr.add_argument('name')
    sub.add_parser('dump')
    args = parser.parse_args()
    if args.cmd == 'catalog':
        print(write_catalog(zone_ids=args.zone_ids))
    elif args.cmd == 'create':
        create(args)
    elif args.cmd == 'set-status':
        set_status(args)
    elif args.cmd == 'set-autostop':
        set_autostop(args)
    elif args.cmd == 'remove':
        remove(args)
    elif args.cmd == 'keys':
        keys(args)
    elif args.cmd == 'job':
        job(args)
    elif args.cmd == 'jobs-bulk':
        jobs_bulk(args)
    elif args.cmd == 'job-state':
        job_state(args)
    elif args.cmd == 'service':
        service(args)
    elif args.cmd == 'replica':
        replica(args)
    elif args.cmd == 'service-state':
        service_state(args)
    elif args.cmd == 'service-remove':
        service_remove(args)
    elif args.cmd == 'dump':
        dump(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
