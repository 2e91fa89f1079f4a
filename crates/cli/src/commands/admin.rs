//! `assay admin create-key`: the offline recovery. It opens the node's store directly and needs
//! no key and no running server, so an operator who lost every admin key gets back in. The key
//! is made and shown exactly as the API makes and shows one (`assay_service::keys`, `views`).

use crate::args::{StoreArgs, role_arg};
use crate::render::{announce_key, print_json};
use anyhow::{Context, Result};
use assay_api::Role;
use assay_service::keys::new_key;
use assay_service::views;
use assay_store::now_millis;

#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an API key offline, in a node's store (recovery), and print it.
    ///
    /// For when no admin key is left: needs no key and no server (it works whether or not
    /// `assay serve` runs on the store), only write access to it.
    CreateKey {
        #[command(flatten)]
        store: StoreArgs,
        /// The tenant the key belongs to.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The key's role.
        #[arg(long, default_value = "admin", value_parser = role_arg())]
        role: Role,
        /// A name to recognise the key by.
        #[arg(long, default_value = "recovery")]
        name: String,
        /// Print the new key as a JSON object (with the key in `key`).
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::CreateKey {
            store,
            tenant,
            role,
            name,
            json,
        } => {
            let url = store.url();
            // Validated before the store is opened: a bad tenant touches nothing.
            let (secret, key) = new_key(&tenant, role, &name, None, now_millis())?;
            let store = crate::store::open_existing(&url).await?;
            let stored = store
                .create_key(&key)
                .await
                .with_context(|| format!("storing the key in {url}"));
            store.close().await;
            stored?;
            let view = views::new_key(&key, secret);
            if json {
                print_json(&view)
            } else {
                announce_key(&view)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: AdminCommand,
    }

    #[test]
    fn admin_command_line() {
        TestCli::command().debug_assert();
        let cli = TestCli::try_parse_from(["assay", "create-key", "--data", "/d"]).unwrap();
        let AdminCommand::CreateKey {
            store,
            tenant,
            role,
            name,
            json,
        } = cli.cmd;
        assert_eq!(store.data, std::path::PathBuf::from("/d"));
        assert_eq!(store.url().to_string(), "sqlite:///d/assay.db");
        assert_eq!(
            (tenant.as_str(), role, name.as_str()),
            ("default", Role::Admin, "recovery")
        );
        assert!(!json);
        assert!(TestCli::try_parse_from(["assay", "create-key", "--role", "root"]).is_err());
    }
}
