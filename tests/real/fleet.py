"""A realistic-size synthetic catalog and a mixed fleet, through SkyPilot's own Python API.

Run with the interpreter of the venv that serves the API server, and with the same HOME,
SKY_RUNTIME_DIR and SKYPILOT_GLOBAL_CONFIG, so that it writes the server's own state.
No cloud is contacted: the clusters are records with AWS, GCP and Azure handles.

    python fleet.py catalog [--catalog C]               writes the v8 catalogs
    python fleet.py create N [--prefix P] [--catalog C] writes the catalogs and N clusters
    python fleet.py churn SECONDS [--every S]           changes the fleet's statuses for a while

--catalog test (the default; 3,380 rows in all, what the tests use) or published: the
size of SkyPilot's published v8 catalogs, whose AWS file (3.65 MB) holds about 50,000
rows (every instance type in every availability zone offering it) and GCP's (2.2 MB)
about 31,000-34,000 (both estimated from the file sizes and the length of their rows);
Azure's, by region, a few thousand. The extra rows are more regions, zones
and instance types of the same form; the fleet's own types and regions are in both.

The catalogs are generated, not copied: every instance type is offered in every region
and zone of its cloud, with SkyPilot's v8 columns, so a lookup filters a frame of real
size. The fleet cycles through clouds, regions, instance types (CPU and GPU), statuses,
autostop settings and node counts, deterministically.
"""
import argparse
import csv
import os
import sys

# Instance types: (name, accelerator, count, vCPUs, memory GiB, hourly price).
AWS_TYPES = [
    ('m6i.large', None, None, 2, 8, 0.096),
    ('m6i.xlarge', None, None, 4, 16, 0.192),
    ('m6i.2xlarge', None, None, 8, 32, 0.384),
    ('c6i.4xlarge', None, None, 16, 32, 0.68),
    ('r6i.2xlarge', None, None, 8, 64, 0.504),
    ('g5.xlarge', 'A10G', 1, 4, 16, 1.006),
    ('g5.12xlarge', 'A10G', 4, 48, 192, 5.672),
    ('p3.2xlarge', 'V100', 1, 8, 61, 3.06),
    ('p4d.24xlarge', 'A100', 8, 96, 1152, 32.7726),
    ('g4dn.xlarge', 'T4', 1, 4, 16, 0.526),
]
AWS_FAMILIES = ['m5', 'm5a', 'm6a', 'm7i', 'c5', 'c6a', 'c7i', 'r5', 'r6a', 'r7i', 't3',
                'x2idn', 'i4i', 'z1d']
AWS_SIZES = [('large', 2, 8), ('xlarge', 4, 16), ('2xlarge', 8, 32), ('4xlarge', 16, 64),
             ('8xlarge', 32, 128), ('12xlarge', 48, 192)]
AWS_REGIONS = {
    'us-east-1': ['us-east-1a', 'us-east-1b', 'us-east-1c', 'us-east-1d'],
    'us-east-2': ['us-east-2a', 'us-east-2b', 'us-east-2c'],
    'us-west-2': ['us-west-2a', 'us-west-2b', 'us-west-2c', 'us-west-2d'],
    'eu-west-1': ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'],
    'eu-central-1': ['eu-central-1a', 'eu-central-1b', 'eu-central-1c'],
    'ap-northeast-1': ['ap-northeast-1a', 'ap-northeast-1c', 'ap-northeast-1d'],
}
GCP_TYPES = [
    ('n2-standard-4', None, None, 4, 16, 0.194),
    ('n2-standard-8', None, None, 8, 32, 0.388),
    ('n1-standard-8', None, None, 8, 30, 0.38),
    ('n1-highmem-16', None, None, 16, 104, 0.946),
    ('e2-standard-4', None, None, 4, 16, 0.134),
]
GCP_GPUS = [('V100', 1, 2.48), ('T4', 1, 0.35), ('L4', 1, 0.56)]
GCP_FAMILIES = ['n2', 'n2d', 'c2', 'c3', 'e2', 'm1']
GCP_REGIONS = {
    'us-central1': ['us-central1-a', 'us-central1-b', 'us-central1-c', 'us-central1-f'],
    'us-east1': ['us-east1-b', 'us-east1-c', 'us-east1-d'],
    'us-west1': ['us-west1-a', 'us-west1-b'],
    'europe-west4': ['europe-west4-a', 'europe-west4-b', 'europe-west4-c'],
    'asia-east1': ['asia-east1-a', 'asia-east1-b'],
}
AZURE_TYPES = [
    ('Standard_D2s_v5', None, None, 2, 8, 0.096),
    ('Standard_D8s_v5', None, None, 8, 32, 0.384),
    ('Standard_E16s_v5', None, None, 16, 128, 1.008),
    ('Standard_NC6s_v3', 'V100', 1, 6, 112, 3.06),
    ('Standard_NC24ads_A100_v4', 'A100-80GB', 1, 24, 220, 3.673),
]
AZURE_FAMILIES = ['Standard_D{}s_v4', 'Standard_E{}s_v4', 'Standard_F{}s_v2',
                  'Standard_D{}as_v5', 'Standard_E{}as_v5']
AZURE_REGIONS = ['eastus', 'eastus2', 'westus2', 'westus3', 'centralus', 'northeurope',
                 'westeurope', 'uksouth', 'japaneast', 'southeastasia']

AWS_COLUMNS = ['InstanceType', 'AcceleratorName', 'AcceleratorCount', 'vCPUs', 'MemoryGiB',
               'GpuInfo', 'Price', 'SpotPrice', 'Region', 'AvailabilityZone', 'Arch',
               'LocalDiskType', 'NVMeSupported', 'LocalDiskSize', 'LocalDiskCount',
               'MaximumEfaInterfaces']
GCP_COLUMNS = ['InstanceType', 'vCPUs', 'MemoryGiB', 'AcceleratorName', 'AcceleratorCount',
               'GpuInfo', 'Region', 'AvailabilityZone', 'Price', 'SpotPrice']
AZURE_COLUMNS = ['InstanceType', 'AcceleratorName', 'AcceleratorCount', 'vCPUs',
                 'MemoryGiB', 'GpuInfo', 'Price', 'SpotPrice', 'Region', 'Generation']


def _gpu_info(acc, count, mem_gib=16):
    if acc is None:
        return ''
    return str({'Gpus': [{'Name': acc, 'Manufacturer': 'NVIDIA', 'Count': float(count),
                          'MemoryInfo': {'SizeInMiB': mem_gib * 1024}}],
                'TotalGpuMemoryInMiB': mem_gib * 1024 * count})


def _all_aws_types():
    types = list(AWS_TYPES)
    for fam in AWS_FAMILIES:
        for size, cpus, mem in AWS_SIZES:
            types.append((f'{fam}.{size}', None, None, cpus, mem, round(0.048 * cpus, 4)))
    return types


def _all_gcp_types():
    types = list(GCP_TYPES)
    for fam in GCP_FAMILIES:
        for cpus in (2, 4, 8, 16, 32, 64):
            types.append((f'{fam}-highcpu-{cpus}', None, None, cpus, cpus, round(0.03 * cpus, 4)))
    return types


def _all_azure_types():
    types = list(AZURE_TYPES)
    for fam in AZURE_FAMILIES:
        for cpus in (2, 4, 8, 16, 32, 48, 64):
            types.append((fam.format(cpus), None, None, cpus, cpus * 4, round(0.05 * cpus, 4)))
    return types


def _num(v):
    return '' if v is None else f'{float(v)}'


# The published size's extra regions (three zones each), instance families and sizes.
AWS_MORE_REGIONS = ['us-west-1', 'ca-central-1', 'eu-west-2', 'eu-west-3', 'eu-north-1',
                    'eu-south-1', 'ap-northeast-2', 'ap-northeast-3', 'ap-south-1',
                    'ap-southeast-1', 'ap-southeast-2', 'sa-east-1', 'me-south-1',
                    'af-south-1']
AWS_MORE_SIZES = [('medium', 1, 4), ('large', 2, 8), ('xlarge', 4, 16), ('2xlarge', 8, 32),
                  ('4xlarge', 16, 64), ('8xlarge', 32, 128), ('12xlarge', 48, 192),
                  ('16xlarge', 64, 256), ('24xlarge', 96, 384), ('32xlarge', 128, 512),
                  ('48xlarge', 192, 768), ('metal', 96, 384)]
GCP_MORE_REGIONS = ['us-east4', 'us-east5', 'us-south1', 'us-west2', 'us-west3', 'us-west4',
                    'northamerica-northeast1', 'northamerica-northeast2',
                    'southamerica-east1', 'southamerica-west1', 'europe-west1',
                    'europe-west2', 'europe-west3', 'europe-west6', 'europe-west8',
                    'europe-west9', 'europe-west10', 'europe-west12', 'europe-north1',
                    'europe-central2', 'europe-southwest1', 'me-west1', 'me-central1',
                    'asia-east2', 'asia-northeast1', 'asia-northeast2', 'asia-northeast3',
                    'asia-south1', 'asia-southeast1', 'australia-southeast1']
GCP_MORE_SHAPES = ['standard', 'highmem', 'highcpu', 'custom', 'ultramem', 'megamem']
AZURE_MORE_REGIONS = ['southcentralus', 'northcentralus', 'westcentralus', 'westus',
                      'canadacentral', 'canadaeast', 'brazilsouth', 'ukwest', 'francecentral',
                      'germanywestcentral', 'norwayeast', 'swedencentral',
                      'switzerlandnorth', 'polandcentral', 'italynorth', 'uaenorth',
                      'southafricanorth', 'centralindia', 'southindia', 'japanwest',
                      'koreacentral', 'eastasia', 'australiaeast', 'australiasoutheast',
                      'qatarcentral']
AZURE_MORE_FAMILIES = ['Standard_L{}s_v3', 'Standard_M{}ms_v2']


def _first_of_each_name(types):
    """The types, an instance type named twice kept as first listed (the fleet's own
    come first): the catalog must give each name one shape."""
    seen = set()
    return [t for t in types if not (t[0] in seen or seen.add(t[0]))]


def _aws_more_families():
    names = [f'{letter}{gen}{suffix}' for gen in (5, 6, 7, 8) for letter in 'cmrxz'
             for suffix in ('', 'a', 'd', 'n', 'i', 'g', 'dn', 'gd', 'in', 'id', 'ad', 'gn')]
    return [n for n in names if n not in AWS_FAMILIES][:60]


def _zoned_regions(catalog, regions, more, zone_sep):
    """{region: zones}: the tests' regions, and for the published size more regions of
    three zones each (named region + zone_sep + a, b, c)."""
    regions = dict(regions)
    if catalog == 'published':
        for region in more:
            regions[region] = [f'{region}{zone_sep}{z}' for z in 'abc']
    return regions


def _aws_regions(catalog):
    return _zoned_regions(catalog, AWS_REGIONS, AWS_MORE_REGIONS, '')


def _gcp_regions(catalog):
    return _zoned_regions(catalog, GCP_REGIONS, GCP_MORE_REGIONS, '-')


def _azure_regions(catalog):
    return AZURE_REGIONS + (AZURE_MORE_REGIONS if catalog == 'published' else [])


def aws_rows(catalog='test'):
    types = _all_aws_types()
    if catalog == 'published':
        for fam in _aws_more_families():
            for size, cpus, mem in AWS_MORE_SIZES:
                types.append((f'{fam}.{size}', None, None, cpus, mem, round(0.05 * cpus, 4)))
        types = _first_of_each_name(types)
    for it, acc, cnt, cpus, mem, price in types:
        for r_i, (region, zones) in enumerate(_aws_regions(catalog).items()):
            for zone in zones:
                p = round(price * (1 + 0.05 * r_i), 4)
                yield [it, acc or '', _num(cnt), _num(cpus), _num(mem), _gpu_info(acc, cnt or 0),
                       p, round(p * 0.35, 4), region, zone, 'x86_64',
                       'ssd' if it.startswith('i4i') else '',
                       'True' if it.startswith('i4i') else 'False',
                       '468.0' if it.startswith('i4i') else '',
                       '1.0' if it.startswith('i4i') else '',
                       '4.0' if it == 'p4d.24xlarge' else '']


def gcp_rows(catalog='test'):
    types = _all_gcp_types()
    if catalog == 'published':
        for fam in ('n1', 'n2', 'n2d', 'n4', 'c2', 'c2d', 'c3', 'c3d', 'c4'):
            for shape in GCP_MORE_SHAPES:
                for cpus in (2, 4, 8, 16, 32):
                    types.append((f'{fam}-{shape}-{cpus}', None, None, cpus, cpus * 4,
                                  round(0.035 * cpus, 4)))
        types = _first_of_each_name(types)
    regions = _gcp_regions(catalog)
    for it, _, _, cpus, mem, price in types:
        for r_i, (region, zones) in enumerate(regions.items()):
            for zone in zones:
                p = round(price * (1 + 0.04 * r_i), 4)
                yield [it, _num(cpus), _num(mem), '', '', '', region, zone, p, round(p * 0.3, 4)]
    # GCP lists attachable GPUs as rows of their own, without an instance type.
    for acc, cnt, price in GCP_GPUS:
        for n in (cnt, 2 * cnt, 4 * cnt):
            for region, zones in regions.items():
                for zone in zones:
                    yield ['', '', '', acc, _num(n), _gpu_info(acc, n), region, zone,
                           round(price * n, 4), round(price * n * 0.3, 4)]


def azure_rows(catalog='test'):
    types = _all_azure_types()
    if catalog == 'published':
        for fam in AZURE_MORE_FAMILIES:
            for cpus in (2, 4, 8, 16, 32, 48, 64):
                types.append((fam.format(cpus), None, None, cpus, cpus * 8,
                              round(0.06 * cpus, 4)))
        types = _first_of_each_name(types)
    for it, acc, cnt, cpus, mem, price in types:
        for r_i, region in enumerate(_azure_regions(catalog)):
            p = round(price * (1 + 0.03 * r_i), 4)
            for gen in ('V1', 'V2'):
                yield [it, acc or '', _num(cnt), _num(cpus), _num(mem), _gpu_info(acc, cnt or 0),
                       p, round(p * 0.2, 4), region, gen]


def write_catalogs(catalog='test'):
    """Writes the AWS, GCP and Azure v8 catalogs of that size; returns {path: rows}."""
    from sky.catalog import common as catalog_common
    written = {}
    for name, columns, rows in (('aws/vms.csv', AWS_COLUMNS, aws_rows(catalog)),
                                ('gcp/vms.csv', GCP_COLUMNS, gcp_rows(catalog)),
                                ('azure/vms.csv', AZURE_COLUMNS, azure_rows(catalog))):
        path = catalog_common.get_catalog_path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        n = 0
        tmp = path + '.tmp'
        with open(tmp, 'w', encoding='utf-8', newline='') as f:
            w = csv.writer(f)
            w.writerow(columns)
            for row in rows:
                w.writerow(row)
                n += 1
        os.replace(tmp, path)
        written[path] = n
    # GCP and Azure read these beside vms.csv; empty frames with the right header suffice.
    for name, header in (('gcp/images.csv', 'Tag,Region,OS,OSVersion,ImageId,CreationDate'),
                         ('azure/images.csv', 'Tag,Region,OS,OSVersion,ImageId,CreationDate'),
                         ('gcp/accelerator_quota_mapping.csv', 'Accelerator,QuotaCode')):
        path = catalog_common.get_catalog_path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            with open(path, 'w', encoding='utf-8') as f:
                f.write(header + '\n')
    return written


# The fleet's shapes: (infra, instance type, accelerators). A GCP GPU cluster names its
# host type and the attached GPU, as `sky launch --gpus V100 -t n1-standard-8` records it.
FLEET_SHAPES = [
    ('aws/us-west-2', 'm6i.large', None),
    ('aws/us-east-1', 'm6i.2xlarge', None),
    ('aws/eu-west-1', 'c6i.4xlarge', None),
    ('aws/us-west-2', 'g5.xlarge', None),
    ('aws/us-east-1', 'p4d.24xlarge', None),
    ('aws/us-east-2', 'p3.2xlarge', None),
    ('aws/ap-northeast-1', 'r6i.2xlarge', None),
    ('aws/us-west-2', 'g4dn.xlarge', None),
    ('gcp/us-central1', 'n2-standard-8', None),
    ('gcp/us-central1', 'n1-standard-8', 'V100:1'),
    ('gcp/europe-west4', 'n1-highmem-16', 'T4:1'),
    ('gcp/us-east1', 'e2-standard-4', None),
    ('azure/eastus', 'Standard_D8s_v5', None),
    ('azure/westus2', 'Standard_NC6s_v3', None),
    ('azure/westeurope', 'Standard_NC24ads_A100_v4', None),
    ('azure/eastus2', 'Standard_D2s_v5', None),
]
STATUSES = ['UP', 'UP', 'STOPPED', 'UP', 'INIT']


def create_fleet(n: int, prefix: str) -> None:
    """Creates N clusters in the server's state database, cycling through FLEET_SHAPES."""
    import sky
    from sky import global_user_state
    from sky.backends import cloud_vm_ray_backend
    from sky.utils import status_lib
    resources = {}
    for infra, it, acc in FLEET_SHAPES:
        kwargs = {'infra': infra, 'instance_type': it}
        if acc:
            kwargs['accelerators'] = acc
        resources[(infra, it, acc)] = sky.Resources(**kwargs)
    for i in range(n):
        shape = FLEET_SHAPES[i % len(FLEET_SHAPES)]
        res = resources[shape]
        name = f'{prefix}{i:05d}'
        nodes = 1 + (i // len(FLEET_SHAPES)) % 3
        handle = cloud_vm_ray_backend.CloudVmRayResourceHandle(
            cluster_name=name,
            cluster_name_on_cloud=f'{name}-oncloud',
            cluster_yaml=None,
            launched_nodes=nodes,
            launched_resources=res)
        status = STATUSES[i % len(STATUSES)]
        global_user_state.add_or_update_cluster(name, handle, {res}, ready=status == 'UP')
        if status != 'UP':
            global_user_state.set_cluster_status(name, status_lib.ClusterStatus[status])
        autostop = [-1, 10, 30, 60][i % 4]
        global_user_state.set_cluster_autostop_value(name, autostop, i % 8 == 3)


def churn(seconds: float, every: float, prefix: str) -> None:
    """A fleet at work, for SECONDS: every EVERY seconds some UP clusters stop, some
    STOPPED ones start, INIT ones come UP and a few new ones launch (a fixed seed, so
    every run is the same), through SkyPilot's own state API as `create` writes it."""
    import random
    import time
    from sky import global_user_state
    from sky.utils import status_lib
    rng = random.Random(21)
    end = time.monotonic() + seconds
    launched = 0
    while time.monotonic() < end:
        records = [r for r in global_user_state.get_clusters() if r['name'].startswith(prefix)]
        by = {}
        for r in records:
            by.setdefault(r['status'].value, []).append(r['name'])
        ups, stopped, inits = by.get('UP', []), by.get('STOPPED', []), by.get('INIT', [])
        for name in rng.sample(ups, min(len(ups), rng.randint(5, 40))):
            global_user_state.set_cluster_status(name, status_lib.ClusterStatus.STOPPED)
        for name in rng.sample(stopped, min(len(stopped), rng.randint(5, 30))):
            global_user_state.set_cluster_status(name, status_lib.ClusterStatus.UP)
        for name in inits[:rng.randint(0, 10)]:
            global_user_state.set_cluster_status(name, status_lib.ClusterStatus.UP)
        more = rng.randint(0, 15)
        create_fleet(more, f'{prefix}new{launched:04d}-')
        launched += 1
        time.sleep(every)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest='cmd', required=True)
    cat = sub.add_parser('catalog')
    c = sub.add_parser('create')
    c.add_argument('count', type=int)
    c.add_argument('--prefix', default='fleet-')
    ch = sub.add_parser('churn')
    ch.add_argument('seconds', type=float)
    ch.add_argument('--every', type=float, default=15)
    ch.add_argument('--prefix', default='fleet-')
    for p in (cat, c):
        p.add_argument('--catalog', choices=['test', 'published'], default='test')
    args = parser.parse_args()
    if args.cmd == 'churn':
        churn(args.seconds, args.every, args.prefix)
        return 0
    written = write_catalogs(args.catalog)
    if args.cmd == 'catalog':
        for path, rows in written.items():
            print(f'{path}: {rows} rows')
    elif args.cmd == 'create':
        create_fleet(args.count, args.prefix)
    return 0


if __name__ == '__main__':
    sys.exit(main())
