//! What a dump holds, computed in one streaming pass: the JSON contract of
//! `ankus backup inspect` (DESIGN.md), plus object-store and auth counts.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::error::BackupError;
use super::op::{Op, branch_of, input_repos, string_at, value_at};
use super::reader::Format;
use super::wire::{OpKind, OpVersion};

/// A branch and its head.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BranchHead {
    /// The branch name.
    pub name: String,
    /// The head commit id.
    pub head: String,
}

/// One repo of the dump.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RepoInventory {
    /// The repo name.
    pub name: String,
    /// How many commits the dump builds in it.
    pub commits: u64,
    /// Its branches, in dump order.
    pub branches: Vec<BranchHead>,
}

/// One pipeline of the dump.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PipelineInventory {
    /// The pipeline name.
    pub name: String,
    /// The worker image.
    pub image: String,
    /// Input repo names.
    pub inputs: Vec<String>,
    /// `__spec__@<id>` when the dump carries the spec commit (1.9+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_commit: Option<String>,
}

/// Auth state carried by the dump.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct AuthInventory {
    /// Whether the dump activates auth.
    pub active: bool,
    /// `set_acl` ops.
    pub acls: u64,
    /// Robot tokens (`restore_auth_token`).
    pub tokens: u64,
    /// Cluster role bindings.
    pub role_bindings: u64,
    /// Whether the dump activates enterprise.
    pub enterprise: bool,
}

/// Object-store contents the dump carries.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ObjectInventory {
    /// Distinct blocks (1.9+), counting each terminator once.
    pub blocks: u64,
    /// Bytes of block data.
    pub block_bytes: u64,
    /// Objects: `create_object` ops (1.9+) or object data runs (1.7/1.8).
    pub objects: u64,
    /// Tags (one per tag name).
    pub tags: u64,
}

/// The whole inventory.
#[derive(Clone, Debug, Serialize)]
pub struct Inventory {
    /// `snappy` or `raw`.
    pub format: &'static str,
    /// Records read.
    pub records: u64,
    /// Decompressed bytes.
    pub bytes: u64,
    /// Records per op version (`"1.11": 631`).
    pub versions: BTreeMap<String, u64>,
    /// Records per op kind, by `Op1_x` field name.
    pub kinds: BTreeMap<String, u64>,
    /// Repos in dump order.
    pub repos: Vec<RepoInventory>,
    /// Pipelines in dump order.
    pub pipelines: Vec<PipelineInventory>,
    /// Job ops.
    pub jobs: u64,
    /// Auth and enterprise.
    pub auth: AuthInventory,
    /// Blocks, objects and tags.
    pub objects: ObjectInventory,
}

/// Builds an inventory op by op.
#[derive(Debug, Default)]
pub struct InventoryBuilder {
    records: u64,
    versions: BTreeMap<String, u64>,
    kinds: BTreeMap<String, u64>,
    repos: Vec<RepoInventory>,
    pipelines: Vec<PipelineInventory>,
    jobs: u64,
    auth: AuthInventory,
    objects: ObjectInventory,
    first_version: Option<OpVersion>,
    /// Where each repo is in `repos`, and each of its branches in its `branches`: a dump can
    /// hold hundreds of thousands of them, so finding one by scanning made a pass quadratic.
    positions: HashMap<String, (usize, HashMap<String, usize>)>,
}

/// The inventory of a dump in one streaming pass (`ankus backup inspect`).
pub fn inspect(location: &super::Location) -> Result<Inventory, BackupError> {
    let mut reader = super::reader::RecordReader::new(location.open()?)?;
    let mut inventory = InventoryBuilder::default();
    while let Some(record) = reader.next_record()? {
        inventory.add(&Op::from_record(record)?)?;
    }
    Ok(inventory.finish(reader.format(), reader.bytes_read()))
}

impl InventoryBuilder {
    fn repo_position(&mut self, name: &str) -> usize {
        if let Some((position, _)) = self.positions.get(name) {
            return *position;
        }
        self.repos.push(RepoInventory {
            name: name.to_owned(),
            commits: 0,
            branches: Vec::new(),
        });
        let position = self.repos.len() - 1;
        self.positions
            .insert(name.to_owned(), (position, HashMap::new()));
        position
    }

    fn repo(&mut self, name: &str) -> &mut RepoInventory {
        let position = self.repo_position(name);
        &mut self.repos[position]
    }

    fn set_branch(&mut self, repo: &str, branch: String, head: String) {
        let position = self.repo_position(repo);
        let entry = &mut self.repos[position];
        let (_, branches) = self
            .positions
            .get_mut(repo)
            .expect("repo_position indexed it");
        match branches.get(&branch) {
            Some(known) => entry.branches[*known].head = head,
            None => {
                branches.insert(branch.clone(), entry.branches.len());
                entry.branches.push(BranchHead { name: branch, head });
            }
        }
    }

    /// Records added so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Adds one op; fails on mixed versions or an undecodable request.
    pub fn add(&mut self, op: &Op) -> Result<(), BackupError> {
        if let Some(first) = self.first_version
            && first != op.version
        {
            return Err(BackupError::MixedVersions {
                at: super::error::At {
                    record: op.index,
                    offset: op.offset,
                    compressed: None,
                },
                first: first.as_str().to_owned(),
                found: op.version.as_str().to_owned(),
            });
        }
        self.first_version = Some(op.version);
        self.records += 1;
        *self
            .versions
            .entry(op.version.as_str().to_owned())
            .or_default() += 1;
        *self.kinds.entry(op.kind.as_str().to_owned()).or_default() += 1;
        match op.kind {
            // Data ops are the bulk of a dump: read them with the cheap field scanner.
            OpKind::Block => {
                let value_len = scan_bytes_field(&op.request_bytes(), 2);
                self.objects.block_bytes += value_len as u64;
                if value_len == 0 {
                    self.objects.blocks += 1;
                }
            }
            OpKind::Object => {
                if scan_bytes_field(&op.request_bytes(), 1) == 0 {
                    self.objects.objects += 1;
                }
            }
            OpKind::CreateObject => self.objects.objects += 1,
            OpKind::Tag => {
                let request = op.request()?;
                self.objects.tags += super::op::messages_at(&request, "tags").len() as u64;
            }
            OpKind::Repo => {
                let request = op.request()?;
                let name = string_at(&request, &["repo", "name"]).unwrap_or_default();
                self.repo(&name);
            }
            OpKind::Commit => {
                let request = op.request()?;
                let repo = string_at(&request, &["parent", "repo", "name"])
                    .or_else(|| string_at(&request, &["branch", "repo", "name"]))
                    .unwrap_or_default();
                self.repo(&repo).commits += 1;
            }
            OpKind::Branch => {
                let request = op.request()?;
                let (repo, branch) = branch_of(&request);
                let head = string_at(&request, &["head", "id"]).unwrap_or_default();
                self.set_branch(&repo, branch, head);
            }
            OpKind::Pipeline => {
                let request = op.request()?;
                let mut inputs = Vec::new();
                if let Some(prost_reflect::Value::Message(input)) = value_at(&request, &["input"]) {
                    input_repos(&input, &mut inputs);
                }
                let spec_commit =
                    string_at(&request, &["spec_commit", "id"]).map(|id| format!("__spec__@{id}"));
                self.pipelines.push(PipelineInventory {
                    name: string_at(&request, &["pipeline", "name"]).unwrap_or_default(),
                    image: string_at(&request, &["transform", "image"]).unwrap_or_default(),
                    inputs,
                    spec_commit,
                });
            }
            OpKind::Job => self.jobs += 1,
            OpKind::SetAcl => self.auth.acls += 1,
            OpKind::RestoreAuthToken => self.auth.tokens += 1,
            OpKind::SetClusterRoleBinding => self.auth.role_bindings += 1,
            OpKind::ActivateAuth => self.auth.active = true,
            OpKind::ActivateEnterprise => self.auth.enterprise = true,
            OpKind::SetAuthConfig | OpKind::CheckAuthToken => {}
        }
        Ok(())
    }

    /// The finished inventory.
    pub fn finish(self, format: Format, bytes: u64) -> Inventory {
        Inventory {
            format: format.as_str(),
            records: self.records,
            bytes,
            versions: self.versions,
            kinds: self.kinds,
            repos: self.repos,
            pipelines: self.pipelines,
            jobs: self.jobs,
            auth: self.auth,
            objects: self.objects,
        }
    }
}

/// The length of bytes field `number` in a serialized message (0 when absent). Given more
/// than once, the last copy is the value, as protobuf decodes it.
fn scan_bytes_field(message: &[u8], number: u32) -> usize {
    super::wire::fields(message)
        .ok()
        .and_then(|fields| {
            fields
                .into_iter()
                .rfind(|field| field.number == number)
                .map(|field| field.value.len())
        })
        .unwrap_or(0)
}

impl Inventory {
    /// A short human-readable summary.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{} dump: {} records, {} bytes, versions {}\n",
            self.format,
            self.records,
            self.bytes,
            self.versions
                .iter()
                .map(|(version, count)| format!("{version}×{count}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        text.push_str(&format!(
            "objects: {} blocks ({} bytes), {} objects, {} tags\n",
            self.objects.blocks, self.objects.block_bytes, self.objects.objects, self.objects.tags
        ));
        text.push_str(&format!("repos ({}):\n", self.repos.len()));
        for repo in &self.repos {
            text.push_str(&format!("  {} — {} commits\n", repo.name, repo.commits));
            for branch in &repo.branches {
                text.push_str(&format!(
                    "    {}@{} → {}\n",
                    repo.name, branch.name, branch.head
                ));
            }
        }
        text.push_str(&format!("pipelines ({}):\n", self.pipelines.len()));
        for pipeline in &self.pipelines {
            text.push_str(&format!(
                "  {} image={} inputs=[{}]\n",
                pipeline.name,
                pipeline.image,
                pipeline.inputs.join(", ")
            ));
        }
        text.push_str(&format!("jobs: {}\n", self.jobs));
        text.push_str(&format!(
            "auth: {} ({} ACLs, {} robot tokens, {} role bindings); enterprise: {}\n",
            if self.auth.active { "active" } else { "off" },
            self.auth.acls,
            self.auth.tokens,
            self.auth.role_bindings,
            if self.auth.enterprise {
                "active"
            } else {
                "off"
            }
        ));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::reader::Record;
    use crate::backup::wire::wrap;

    /// A block op whose `value` is given twice, data then empty: protobuf (and pachd) reads
    /// the last copy, so this is the block's terminator, not 4 bytes of data.
    #[test]
    fn a_block_value_given_twice_is_counted_as_its_last_copy() {
        let mut request = Vec::new();
        prost::encoding::message::encode(
            1,
            &crate::proto::pfs::Block { hash: "b1".into() },
            &mut request,
        );
        prost::encoding::bytes::encode(2, &b"data".to_vec(), &mut request);
        prost::encoding::bytes::encode(2, &Vec::new(), &mut request);
        let record = Record {
            index: 0,
            offset: 0,
            bytes: wrap(OpVersion::V1_13, OpKind::Block, &request),
        };
        let mut builder = InventoryBuilder::default();
        builder
            .add(&Op::from_record(record).expect("an op"))
            .expect("adds");
        let inventory = builder.finish(Format::Raw, 0);
        assert_eq!(
            (inventory.objects.blocks, inventory.objects.block_bytes),
            (1, 0)
        );
    }
}
