//! `updraft feed ...`

use anyhow::{Context, anyhow};
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};

use updraft_ddm::{OsVersion, VersionExtra};
use updraft_feed::client::{DEFAULT_URL, refresh_saved};
use updraft_feed::response::parse_date;
use updraft_feed::{
    BUNDLED_FEED, ClientOptions, DeviceFacts, FeedClient, FeedIndex, FetchOutcome, LookupResponse,
    Platform, RefreshOutcome, Target,
};

use crate::output::{print, print_json, table};

#[derive(Subcommand)]
pub enum FeedCommand {
    /// Fetch the live feed from Apple (trusting only Apple's root certificate).
    Fetch {
        /// Where to fetch from.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// Save as `{"etag", "data"}` here, sending the saved etag; a broken or empty answer
        /// leaves the file as it was. Without it, the response goes to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Every entry of a saved response, as is, in order.
    Show {
        #[command(flatten)]
        source: FeedFile,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The releases that apply to one device, best first.
    Targets(TargetsArgs),
}

#[derive(Args)]
pub struct FeedFile {
    /// A saved lookup-service response, bare or as `{"etag", "data"}`. Default: the capture
    /// bundled with Updraft (2026-04-11).
    #[arg(long)]
    file: Option<PathBuf>,
}

impl FeedFile {
    fn load(&self) -> anyhow::Result<LookupResponse> {
        let (name, bytes) = match &self.file {
            Some(path) => (
                path.display().to_string(),
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            ),
            None => (
                "the bundled feed".to_owned(),
                BUNDLED_FEED.as_bytes().to_vec(),
            ),
        };
        let (response, _) = LookupResponse::parse_saved(&bytes).with_context(|| name.clone())?;
        response.require_entries().with_context(|| name)
    }
}

#[derive(Args)]
pub struct TargetsArgs {
    #[command(flatten)]
    source: FeedFile,
    /// macOS, iOS (also iPadOS, tvOS, watchOS) or visionOS.
    #[arg(long)]
    platform: String,
    /// The device's SoftwareUpdateDeviceID (`J314sAP`, `iPhone15,2`).
    #[arg(long)]
    device_id: String,
    /// The device's OS version (`26.3.1`).
    #[arg(long)]
    os_version: String,
    /// The device's current base build (`25D2128`).
    #[arg(long)]
    build: String,
    /// The device's supplemental letter, if a BSI is installed (`a` or `(a)`).
    #[arg(long, default_value = "")]
    extra: String,
    /// The day to judge availability on, YYYY-MM-DD. Default: today.
    #[arg(long)]
    on: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(command: FeedCommand) -> anyhow::Result<()> {
    match command {
        FeedCommand::Fetch { url, out } => fetch(url, out.as_deref()),
        FeedCommand::Show { source, json } => show(&source.load()?, json),
        FeedCommand::Targets(args) => targets(&args),
    }
}

fn fetch(url: String, out: Option<&Path>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = FeedClient::with_options(ClientOptions {
        url,
        ..ClientOptions::default()
    })?;
    runtime.block_on(async {
        match out {
            Some(path) => match refresh_saved(&client, path)
                .await
                .with_context(|| format!("{} was left as it was", path.display()))?
            {
                RefreshOutcome::Unchanged => {
                    eprintln!("{} is current (the service answered 304)", path.display());
                }
                RefreshOutcome::Updated { response, etag } => eprintln!(
                    "saved {} entries to {} (etag {})",
                    response.entry_count(),
                    path.display(),
                    etag.as_deref().unwrap_or("none")
                ),
            },
            None => match client.fetch(None).await? {
                FetchOutcome::Fetched { body, .. } => print(&String::from_utf8_lossy(&body))?,
                // No etag was sent, so a 304 can only come from a proxy or server that ignores
                // HTTP's rules: say so rather than print nothing.
                FetchOutcome::NotModified => {
                    return Err(anyhow!(
                        "{} answered 304 Not Modified to a request that sent no etag; \
                         check the URL, or fetch with --out FILE to keep a copy",
                        client.url()
                    ));
                }
            },
        }
        Ok(())
    })
}

#[derive(Serialize)]
struct ShownEntry<'a> {
    set: &'a str,
    platform: &'a str,
    product_version: &'a str,
    product_version_extra: Option<&'a str>,
    build: Option<&'a str>,
    prerequisite_build: Option<&'a str>,
    posting_date: NaiveDate,
    expiration_date: Option<NaiveDate>,
    supported_devices: &'a [String],
}

fn show(response: &LookupResponse, json: bool) -> anyhow::Result<()> {
    let entries: Vec<ShownEntry<'_>> = response
        .entries()
        .map(|located| ShownEntry {
            set: &located.set.name,
            platform: located.platform,
            product_version: &located.entry.product_version,
            product_version_extra: located.entry.product_version_extra.as_deref(),
            build: located.entry.build.as_deref(),
            prerequisite_build: located.entry.prerequisite_build.as_deref(),
            posting_date: located.entry.posting_date,
            expiration_date: located.entry.expiration_date,
            supported_devices: &located.entry.supported_devices,
        })
        .collect();
    if json {
        #[derive(Serialize)]
        struct Shown<'a> {
            entries: Vec<ShownEntry<'a>>,
        }
        return print_json(&Shown { entries });
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|entry| {
            vec![
                entry.set.to_owned(),
                entry.platform.to_owned(),
                entry.product_version.to_owned(),
                entry.product_version_extra.unwrap_or("").to_owned(),
                entry.build.unwrap_or("-").to_owned(),
                entry.prerequisite_build.unwrap_or("").to_owned(),
                entry.posting_date.to_string(),
                date_or_dash(entry.expiration_date),
                entry.supported_devices.len().to_string(),
            ]
        })
        .collect();
    print(&table(
        &[
            "SET",
            "PLATFORM",
            "VERSION",
            "EXTRA",
            "BUILD",
            "PREREQUISITE",
            "POSTED",
            "EXPIRES",
            "DEVICES",
        ],
        &rows,
    ))
}

fn targets(args: &TargetsArgs) -> anyhow::Result<()> {
    let platform: Platform = args.platform.parse().context("--platform")?;
    let os_version = OsVersion::parse(&args.os_version).context("--os-version")?;
    let extra = VersionExtra::parse(&args.extra);
    let day = match &args.on {
        Some(text) => parse_date(text)
            .ok_or_else(|| anyhow!("--on: {text:?} is not a date; expected YYYY-MM-DD"))?,
        None => chrono::Local::now().date_naive(),
    };
    if args.build.trim().is_empty() {
        return Err(anyhow!(
            "--build is empty; give the device's current build, such as 25D125"
        ));
    }
    let response = args.source.load()?;
    let index = FeedIndex::new(&response);
    for skipped in index.skipped() {
        eprintln!("warning: {} left out: {}", skipped.location, skipped.reason);
    }
    let device = DeviceFacts {
        platform,
        device_id: &args.device_id,
        os_version: &os_version,
        build: &args.build,
        extra: &extra,
    };
    let found: Vec<Target<'_>> = index.targets(&device, day);
    if args.json {
        #[derive(Serialize)]
        struct Found<'a> {
            targets: &'a [Target<'a>],
        }
        return print_json(&Found { targets: &found });
    }
    let mut text = format!(
        "{} on {} {}{} ({}), {}: {} target{}\n",
        args.device_id,
        platform,
        os_version,
        if extra.is_none() {
            String::new()
        } else {
            format!(" {extra}")
        },
        args.build,
        day,
        found.len(),
        if found.len() == 1 { "" } else { "s" }
    );
    if !found.is_empty() {
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|target| {
                vec![
                    target.product_version.to_owned(),
                    target.product_version_extra.unwrap_or_default().to_owned(),
                    target.build.unwrap_or("-").to_owned(),
                    target.posting_date.to_string(),
                    date_or_dash(target.expiration_date),
                ]
            })
            .collect();
        text.push_str(&table(
            &["VERSION", "EXTRA", "BUILD", "POSTED", "EXPIRES"],
            &rows,
        ));
    }
    print(&text)
}

fn date_or_dash(date: Option<NaiveDate>) -> String {
    date.map_or_else(|| "-".into(), |d| d.to_string())
}
