"""Tests for the request-scoped memoization of catalog lookups.

Goes with skypilot-0.14.1-catalog-request-cache.patch; upstream it would live in
tests/unit_tests/test_sky/catalog/. Run with the patched SkyPilot installed:

    pytest nix/patches/test_catalog_request_cache.py
"""
import pandas as pd
import pytest

from sky.catalog import common
from sky.utils import annotations

_HEADER = ('InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,'
           'GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n')


def _write_catalog(path, rows):
    path.write_text(_HEADER + ''.join(row + '\n' for row in rows),
                    encoding='utf-8')


def _filler_rows(n):
    return [
        f'f{i}.large,,,2.0,8.0,,0.1,0.03,us-east-1,us-east-1a'
        for i in range(n)
    ]


@pytest.fixture(autouse=True)
def _fresh_request():
    annotations.clear_request_level_cache()
    yield
    annotations.clear_request_level_cache()


@pytest.fixture
def filter_counter(monkeypatch):
    """Counts the filters over the catalog (one per uncached lookup)."""
    calls = []
    real = common._get_instance_type  # pylint: disable=protected-access

    def counting(df, instance_type, region, zone=None):
        calls.append(instance_type)
        return real(df, instance_type, region, zone)

    monkeypatch.setattr(common, '_get_instance_type', counting)
    return calls


class _Reloadable:
    """The update function of a LazyDataFrame, as read_catalog makes one."""

    def __init__(self):
        self.updated = False

    def __call__(self):
        updated, self.updated = self.updated, False
        return updated


def test_lookups_are_memoized_within_a_request(tmp_path, filter_counter):
    path = tmp_path / 'vms.csv'
    _write_catalog(path, _filler_rows(50) + [
        'p3.2xlarge,V100,1.0,8.0,61.0,,3.06,0.9,us-east-1,us-east-1a',
        'p3.2xlarge,V100,1.0,8.0,61.0,,3.06,0.9,us-east-1,us-east-1b',
        'm6i.large,,,2.0,8.0,,0.096,0.03,us-east-1,us-east-1a',
    ])
    df = common.LazyDataFrame(str(path), _Reloadable())
    for _ in range(100):
        assert common.get_vcpus_mem_from_instance_type_impl(
            df, 'p3.2xlarge') == (8.0, 61.0)
        assert common.get_accelerators_from_instance_type_impl(
            df, 'p3.2xlarge') == {'V100': 1}
        assert common.get_accelerators_from_instance_type_impl(
            df, 'm6i.large') is None
        assert common.get_hourly_cost_impl(df, 'p3.2xlarge', False,
                                           'us-east-1', None) == 3.06
    # One filter per distinct lookup, not one per call.
    assert len(filter_counter) == 4


def test_memoized_answers_equal_uncached_answers(tmp_path):
    path = tmp_path / 'vms.csv'
    _write_catalog(path, [
        'g5.12xlarge,A10G,4.0,48.0,192.0,,5.672,1.7,us-west-2,us-west-2a',
        'g5.12xlarge,A10G,4.0,48.0,192.0,,5.672,1.6,us-west-2,us-west-2b',
        'Standard_NV6ads_A10_v5,A10,0.167,6.0,55.0,,0.45,0.1,eastus,',
        'n2-standard-8,,,8.0,32.0,,0.388,0.1,us-central1,us-central1-a',
    ])
    df = common.LazyDataFrame(str(path), _Reloadable())
    for instance_type in ('g5.12xlarge', 'Standard_NV6ads_A10_v5',
                          'n2-standard-8'):
        for name in ('get_vcpus_mem_from_instance_type_impl',
                     'get_accelerators_from_instance_type_impl'):
            cached = getattr(common, name)
            uncached = cached.__wrapped__
            assert cached(df, instance_type) == uncached(df, instance_type)
    assert (common.get_hourly_cost_impl(df, 'g5.12xlarge', True, 'us-west-2',
                                        None) == 1.6)
    assert (common.get_hourly_cost_impl.__wrapped__(
        df, 'g5.12xlarge', True, 'us-west-2', None) == 1.6)


def test_errors_are_not_memoized(tmp_path):
    path = tmp_path / 'vms.csv'
    _write_catalog(path, ['m6i.large,,,2.0,8.0,,0.096,0.03,us-east-1,'
                          'us-east-1a'])
    df = common.LazyDataFrame(str(path), _Reloadable())
    for _ in range(2):
        with pytest.raises(ValueError, match='No instance type nope found'):
            common.get_vcpus_mem_from_instance_type_impl(df, 'nope')


def test_catalog_reloaded_between_requests_gives_fresh_answers(tmp_path):
    path = tmp_path / 'vms.csv'
    _write_catalog(path, ['x1.large,T4,1.0,4.0,16.0,,0.5,0.2,us-east-1,'
                          'us-east-1a'])
    update = _Reloadable()
    df = common.LazyDataFrame(str(path), update)
    assert common.get_vcpus_mem_from_instance_type_impl(
        df, 'x1.large') == (4.0, 16.0)
    assert common.get_accelerators_from_instance_type_impl(
        df, 'x1.large') == {'T4': 1}

    # A new catalog is fetched; the next request reloads it.
    _write_catalog(path, ['x1.large,L4,2.0,8.0,32.0,,0.9,0.3,us-east-1,'
                          'us-east-1a'])
    update.updated = True
    annotations.clear_request_level_cache()
    assert common.get_vcpus_mem_from_instance_type_impl(
        df, 'x1.large') == (8.0, 32.0)
    assert common.get_accelerators_from_instance_type_impl(
        df, 'x1.large') == {'L4': 2}
    assert common.get_hourly_cost_impl(df, 'x1.large', False, None,
                                       None) == 0.9


def test_a_new_frame_is_never_answered_from_an_old_one(filter_counter):
    # Within one request too: the key is the loaded frame, not its wrapper or
    # its contents, so a catalog replaced by another frame is looked up anew.
    old = pd.DataFrame({
        'InstanceType': ['a.large'],
        'vCPUs': [2.0],
        'MemoryGiB': [8.0],
    })
    new = pd.DataFrame({
        'InstanceType': ['a.large'],
        'vCPUs': [4.0],
        'MemoryGiB': [16.0],
    })
    assert common.get_vcpus_mem_from_instance_type_impl(old,
                                                        'a.large') == (2.0, 8.0)
    assert common.get_vcpus_mem_from_instance_type_impl(new, 'a.large') == (
        4.0, 16.0)
    assert common.get_vcpus_mem_from_instance_type_impl(old,
                                                        'a.large') == (2.0, 8.0)
    assert len(filter_counter) == 2


def test_callers_cannot_change_a_memoized_answer(tmp_path):
    path = tmp_path / 'vms.csv'
    _write_catalog(path, ['p3.8xlarge,V100,4.0,32.0,244.0,,12.24,3.6,'
                          'us-east-1,us-east-1a'])
    df = common.LazyDataFrame(str(path), _Reloadable())
    first = common.get_accelerators_from_instance_type_impl(df, 'p3.8xlarge')
    first['V100'] = 99
    first['extra'] = 1
    assert common.get_accelerators_from_instance_type_impl(
        df, 'p3.8xlarge') == {'V100': 4}


def test_the_cache_is_request_scoped(tmp_path, filter_counter):
    path = tmp_path / 'vms.csv'
    _write_catalog(path, ['m6i.large,,,2.0,8.0,,0.096,0.03,us-east-1,'
                          'us-east-1a'])
    df = common.LazyDataFrame(str(path), _Reloadable())
    common.get_vcpus_mem_from_instance_type_impl(df, 'm6i.large')
    common.get_vcpus_mem_from_instance_type_impl(df, 'm6i.large')
    assert len(filter_counter) == 1
    annotations.clear_request_level_cache()
    common.get_vcpus_mem_from_instance_type_impl(df, 'm6i.large')
    assert len(filter_counter) == 2
