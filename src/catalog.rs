//! Hourly prices from SkyPilot's own catalog, for the launch policy (price caps) and the
//! cluster manager (each cluster's $/h when SkyPilot's cost report has none): `<catalog_dir>/<cloud>/vms.csv`, the file
//! SkyPilot downloads and reads (`sky/catalog/common.py`; columns `InstanceType`,
//! `Price`, `SpotPrice`, `Region`, `AvailabilityZone`, among others). A cloud's file is
//! parsed once and parsed again only when it changes (size, time or inode), so a
//! request costs a `stat` per cloud it needs.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Largest catalog file read (AWS's is ~10 MB).
pub(crate) const MAX_CATALOG_BYTES: u64 = 512 * 1024 * 1024;

/// One row: where an instance type is offered and at what prices (USD per hour).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Offer {
    pub(crate) region: String,
    pub(crate) zone: Option<String>,
    pub(crate) price: Option<f64>,
    pub(crate) spot_price: Option<f64>,
}

/// One cloud's catalog, by instance type.
#[derive(Debug, Default)]
pub(crate) struct CloudCatalog {
    pub(crate) offers: HashMap<String, Vec<Offer>>,
    /// Region names, lower case.
    pub(crate) regions: BTreeSet<String>,
}

/// What the policy asks of a catalog; [`Catalog`] reads SkyPilot's files, tests give
/// a table.
pub(crate) trait Prices: Send + Sync {
    /// The catalog of `cloud` (lower case): `Ok(None)` when there is none, `Err` when it
    /// cannot be read (the message names the file).
    fn cloud(&self, cloud: &str) -> Result<Option<Arc<CloudCatalog>>, String>;
    /// The clouds that have a catalog.
    fn clouds(&self) -> Vec<String>;
    /// Where the catalog of `cloud` is, for messages.
    fn describe(&self, cloud: &str) -> String;
}

/// The cheapest matching offer, as SkyPilot's `get_hourly_cost` picks it: rows of the
/// instance type, in `region` (any case) and `zone` when given, cheapest price of the
/// kind asked. `None` when nothing matches or no matching row has that price.
pub(crate) fn cheapest<'a>(
    catalog: &'a CloudCatalog,
    instance_type: &str,
    region: Option<&str>,
    zone: Option<&str>,
    spot: bool,
) -> Option<(f64, &'a Offer)> {
    let offers = catalog.offers.get(instance_type)?;
    offers
        .iter()
        .filter(|o| region.is_none_or(|r| o.region.eq_ignore_ascii_case(r)))
        .filter(|o| zone.is_none_or(|z| o.zone.as_deref() == Some(z)))
        .filter_map(|o| {
            let p = if spot { o.spot_price } else { o.price };
            p.map(|p| (p, o))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// The list price of a whole cluster, in USD per hour: its instance type's cheapest
/// offer in its region (and zone, when the catalog has that zone), on-demand or spot as
/// its resources say, × its nodes. `None` when the cloud has no catalog, the instance
/// type or region is not in it, or the catalog cannot be read (logged once per change).
pub(crate) fn cluster_price(prices: &dyn Prices, c: &crate::cluster::Cluster) -> Option<f64> {
    let cloud = c.cloud.as_deref()?.to_ascii_lowercase();
    let instance_type = c.instance_type.as_deref()?;
    let catalog = match prices.cloud(&cloud) {
        Ok(Some(c)) => c,
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!(error = %e, "no catalog price");
            return None;
        }
    };
    let spot = c.resources.as_deref().is_some_and(crate::cluster::is_spot);
    let region = c.region.as_deref();
    let (price, _) = cheapest(&catalog, instance_type, region, c.zone.as_deref(), spot)
        .or_else(|| cheapest(&catalog, instance_type, region, None, spot))?;
    let nodes = u32::try_from(c.nodes.max(1)).unwrap_or(1);
    Some(price * f64::from(nodes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    ino: u64,
}

struct Cached {
    stamp: Stamp,
    catalog: Arc<CloudCatalog>,
}

/// SkyPilot's catalog files under one directory, parsed on demand and cached.
pub(crate) struct Catalog {
    dir: PathBuf,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Catalog {
    pub(crate) fn new(dir: &Path) -> Catalog {
        Catalog {
            dir: dir.to_path_buf(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, cloud: &str) -> PathBuf {
        self.dir.join(cloud).join("vms.csv")
    }
}

impl Prices for Catalog {
    fn cloud(&self, cloud: &str) -> Result<Option<Arc<CloudCatalog>>, String> {
        use std::os::unix::fs::MetadataExt;
        if cloud.is_empty() || cloud.contains(['/', '\0']) || cloud.starts_with('.') {
            return Ok(None);
        }
        let path = self.path(cloud);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let stamp = Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            ino: meta.ino(),
        };
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.get(cloud) {
                if c.stamp == stamp {
                    return Ok(Some(c.catalog.clone()));
                }
            }
        }
        let text = crate::files::read_regular_text(&path, MAX_CATALOG_BYTES)
            .map_err(|e| format!("{}: cannot read SkyPilot's catalog: it {e}", path.display()))?;
        let catalog = Arc::new(parse_csv(&text).map_err(|e| format!("{}: {e}", path.display()))?);
        tracing::info!(
            file = %path.display(),
            instance_types = catalog.offers.len(),
            "catalog read"
        );
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(
            cloud.to_string(),
            Cached {
                stamp,
                catalog: catalog.clone(),
            },
        );
        Ok(Some(catalog))
    }

    fn clouds(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.') && self.path(name).is_file())
            .collect();
        out.sort();
        out
    }

    fn describe(&self, cloud: &str) -> String {
        self.path(cloud).display().to_string()
    }
}

/// Parses a catalog CSV (RFC 4180: quoted fields may hold commas, doubled quotes and
/// line breaks, as GCP's and Azure's `GpuInfo` column does).
pub(crate) fn parse_csv(text: &str) -> Result<CloudCatalog, String> {
    let mut rows = CsvRows::new(text);
    let header = rows
        .next()
        .ok_or_else(|| "empty file: expected a CSV header with InstanceType, Price, SpotPrice, Region, AvailabilityZone".to_string())??;
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(it), Some(region)) = (col("InstanceType"), col("Region")) else {
        return Err(format!(
            "the header has no InstanceType or Region column: expected SkyPilot's catalog columns (found {})",
            header.join(",")
        ));
    };
    let (price, spot, zone) = (col("Price"), col("SpotPrice"), col("AvailabilityZone"));
    let mut out = CloudCatalog::default();
    for (n, row) in rows.enumerate() {
        let row = row.map_err(|e| format!("row {}: {e}", n + 2))?;
        let get = |i: Option<usize>| i.and_then(|i| row.get(i)).map(|s| s.trim());
        let Some(instance_type) = get(Some(it)).filter(|s| !s.is_empty()) else {
            continue;
        };
        let region = get(Some(region)).unwrap_or_default().to_string();
        let number = |i| {
            get(i)
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|p| p.is_finite() && *p >= 0.0)
        };
        let offer = Offer {
            zone: get(zone).filter(|s| !s.is_empty()).map(str::to_string),
            price: number(price),
            spot_price: number(spot),
            region: region.clone(),
        };
        if !region.is_empty() {
            out.regions.insert(region.to_ascii_lowercase());
        }
        out.offers
            .entry(instance_type.to_string())
            .or_default()
            .push(offer);
    }
    Ok(out)
}

/// Rows of a CSV text, each a list of fields.
struct CsvRows<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl<'a> CsvRows<'a> {
    fn new(text: &'a str) -> CsvRows<'a> {
        CsvRows {
            chars: text.chars().peekable(),
        }
    }
}

impl Iterator for CsvRows<'_> {
    type Item = Result<Vec<String>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        // Skip blank lines.
        while matches!(self.chars.peek(), Some('\n' | '\r')) {
            self.chars.next();
        }
        self.chars.peek()?;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut at_start = true;
        loop {
            let Some(c) = self.chars.next() else {
                if quoted {
                    return Some(Err("a quoted field is not closed".to_string()));
                }
                fields.push(field);
                return Some(Ok(fields));
            };
            if quoted {
                if c == '"' {
                    if self.chars.peek() == Some(&'"') {
                        self.chars.next();
                        field.push('"');
                    } else {
                        quoted = false;
                    }
                } else {
                    field.push(c);
                }
                continue;
            }
            match c {
                '"' if at_start => {
                    quoted = true;
                    at_start = false;
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    at_start = true;
                }
                '\r' => {}
                '\n' => {
                    fields.push(field);
                    return Some(Ok(fields));
                }
                c => {
                    field.push(c);
                    at_start = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: &str = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n\
        m6i.large,,,2.0,8.0,,0.096,0.0374,us-west-2,us-west-2a\n\
        m6i.large,,,2.0,8.0,,0.107,0.04,us-east-1,us-east-1a\n\
        p3.2xlarge,V100,1.0,8.0,61.0,\"{'Gpus': [{'Name': 'V100', 'Count': 1}], \"\"x\"\": 1}\",3.06,,us-west-2,us-west-2b\n";

    #[test]
    fn reads_prices_with_quoted_fields() {
        let c = parse_csv(AWS).unwrap();
        assert_eq!(c.offers["m6i.large"].len(), 2);
        let p3 = &c.offers["p3.2xlarge"][0];
        assert_eq!((p3.price, p3.spot_price), (Some(3.06), None));
        assert_eq!(p3.zone.as_deref(), Some("us-west-2b"));
        assert!(c.regions.contains("us-east-1"));
    }

    #[test]
    fn cheapest_follows_skypilot() {
        let c = parse_csv(AWS).unwrap();
        let (p, o) = cheapest(&c, "m6i.large", None, None, false).unwrap();
        assert_eq!((p, o.region.as_str()), (0.096, "us-west-2"));
        let (p, _) = cheapest(&c, "m6i.large", Some("US-EAST-1"), None, false).unwrap();
        assert_eq!(p, 0.107);
        let (p, _) = cheapest(&c, "m6i.large", None, None, true).unwrap();
        assert_eq!(p, 0.0374);
        assert!(cheapest(
            &c,
            "m6i.large",
            Some("us-west-2"),
            Some("us-west-2c"),
            false
        )
        .is_none());
        // No spot price for p3 in the table: nothing to compare.
        assert!(cheapest(&c, "p3.2xlarge", None, None, true).is_none());
        assert!(cheapest(&c, "nope", None, None, false).is_none());
    }

    #[test]
    fn a_cluster_is_priced_by_type_region_spot_and_nodes() {
        use crate::cluster::{Cluster, ClusterStatus};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("aws")).unwrap();
        std::fs::write(
            dir.path().join("aws/vms.csv"),
            "InstanceType,Price,SpotPrice,Region,AvailabilityZone\n\
             m6i.large,0.096,0.04,us-west-2,us-west-2a\n\
             m6i.large,0.096,0.03,us-west-2,us-west-2b\n\
             m6i.large,0.1,0.05,eu-west-1,eu-west-1a\n",
        )
        .unwrap();
        let catalog = Catalog::new(dir.path());
        let c = Cluster {
            cloud: Some("AWS".into()),
            region: Some("us-west-2".into()),
            instance_type: Some("m6i.large".into()),
            nodes: 2,
            resources: Some("2x(cpus=2, mem=8, m6i.large, disk=256)".into()),
            ..Cluster::bare("a", ClusterStatus::Up)
        };
        let price = cluster_price(&catalog, &c).unwrap();
        assert!((price - 0.192).abs() < 1e-12, "{price}");
        let spot = Cluster {
            resources: Some("2x[spot](cpus=2, mem=8, m6i.large, disk=256)".into()),
            zone: Some("us-west-2a".into()),
            ..c.clone()
        };
        assert!((cluster_price(&catalog, &spot).unwrap() - 0.08).abs() < 1e-12);
        // A zone the catalog does not list: the region's cheapest.
        let elsewhere = Cluster {
            zone: Some("us-west-2z".into()),
            ..spot
        };
        assert!((cluster_price(&catalog, &elsewhere).unwrap() - 0.06).abs() < 1e-12);
        for unpriced in [
            Cluster {
                cloud: Some("GCP".into()),
                ..c.clone()
            },
            Cluster {
                region: Some("ap-south-1".into()),
                ..c.clone()
            },
            Cluster {
                instance_type: None,
                ..c.clone()
            },
            Cluster {
                cloud: None,
                ..c.clone()
            },
        ] {
            assert_eq!(cluster_price(&catalog, &unpriced), None, "{unpriced:?}");
        }
    }

    #[test]
    fn a_broken_catalog_is_an_error_not_a_panic() {
        assert!(parse_csv("").is_err());
        assert!(parse_csv("a,b\n1,2\n")
            .unwrap_err()
            .contains("InstanceType"));
        assert!(parse_csv("InstanceType,Region\n\"open,x\n").is_err());
        // Short rows and junk prices are skipped, not fatal.
        let c = parse_csv("InstanceType,Price,Region\nx\ny,abc,r\nz,-1,r\n").unwrap();
        assert_eq!(c.offers["y"][0].price, None);
        assert_eq!(c.offers["z"][0].price, None);
    }

    #[test]
    fn files_are_read_again_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("aws")).unwrap();
        let path = dir.path().join("aws/vms.csv");
        std::fs::write(&path, AWS).unwrap();
        let cat = Catalog::new(dir.path());
        assert_eq!(cat.clouds(), vec!["aws".to_string()]);
        assert!(cat.cloud("gcp").unwrap().is_none());
        assert!(cat.cloud("../x").unwrap().is_none());
        let a = cat.cloud("aws").unwrap().unwrap();
        assert!(a.offers.contains_key("p3.2xlarge"));
        std::fs::write(&path, "InstanceType,Price,Region\nonly.one,1.5,r1\n").unwrap();
        let b = cat.cloud("aws").unwrap().unwrap();
        assert!(!b.offers.contains_key("p3.2xlarge"));
        assert!(b.offers.contains_key("only.one"));
    }
}
