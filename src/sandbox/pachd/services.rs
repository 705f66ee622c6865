//! The gRPC services of the emulated pachd: thin adapters from requests to [`State`]
//! transitions and [`Bucket`] reads and writes, with pachd's auth checks and error texts.
//!
//! Not emulated (answered with a clear `Unimplemented`): PutFile from a URL, delimiter splitting
//! in PutFile (the value is stored as one file), Authenticate (use GetAuthToken as an admin),
//! and queueing requests into transactions (the `pach-transaction` header is ignored; the
//! transaction RPCs exist so clients that open one do not fail).

use std::collections::HashMap;
use std::io::Read;
use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::bucket::Bucket;
use super::dumpfile::{DumpReader, DumpWriter};
use super::error::{PachdError, PachdResult};
use super::extract::{CHUNK, extract, extract_pipeline};
use super::restore::{RestoreMode, Restorer};
use super::server::{Cluster, MAX_MESSAGE, RESTORE_MODE_KEY, token_of};
use super::state::{State, commit_msg, commit_repo, new_id, now};
use super::tree::{FileTree, Node, clean_path};
use crate::proto::{admin, auth, enterprise, health, pfs, pps, transaction, versionpb};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn stream_of<T: Send + 'static>(items: Vec<T>) -> BoxStream<T> {
    Box::pin(tokio_stream::iter(items.into_iter().map(Ok)))
}

/// Builds the router serving every pachd service of `cluster`.
pub fn router(cluster: &Cluster) -> tonic::transport::server::Router {
    router_on(cluster, tonic::transport::Server::builder())
}

/// Every service on `server` (a plain builder, or one with TLS configured).
pub fn router_on(
    cluster: &Cluster,
    mut server: tonic::transport::Server,
) -> tonic::transport::server::Router {
    macro_rules! svc {
        ($server:path, $value:expr) => {
            <$server>::new($value)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE)
        };
    }
    let c = || Svc {
        cluster: cluster.clone(),
    };
    // grpc-go, and so pachd, sizes its HTTP/2 windows from measured bandwidth (BDP
    // probing); hyper's fixed 1 MiB windows would stall 8 MiB block ops on every window.
    server = server.http2_adaptive_window(Some(true)).tcp_nodelay(true);
    server
        .add_service(svc!(pfs::api_server::ApiServer<Svc>, c()))
        .add_service(svc!(
            pfs::object_api_server::ObjectApiServer<ObjectSvc>,
            ObjectSvc {
                cluster: cluster.clone()
            }
        ))
        .add_service(svc!(
            pps::api_server::ApiServer<PpsSvc>,
            PpsSvc {
                cluster: cluster.clone()
            }
        ))
        .add_service(svc!(
            admin::api_server::ApiServer<AdminSvc>,
            AdminSvc {
                cluster: cluster.clone()
            }
        ))
        .add_service(svc!(
            auth::api_server::ApiServer<AuthSvc>,
            AuthSvc {
                cluster: cluster.clone()
            }
        ))
        .add_service(svc!(
            enterprise::api_server::ApiServer<EnterpriseSvc>,
            EnterpriseSvc {
                cluster: cluster.clone()
            }
        ))
        .add_service(svc!(
            versionpb::api_server::ApiServer<VersionSvc>,
            VersionSvc {
                cluster: cluster.clone()
            }
        ))
        .add_service(svc!(
            health::health_server::HealthServer<HealthSvc>,
            HealthSvc
        ))
        .add_service(svc!(
            transaction::api_server::ApiServer<TransactionSvc>,
            TransactionSvc {
                cluster: cluster.clone()
            }
        ))
}

fn repo_of(repo: Option<&pfs::Repo>) -> String {
    repo.map(|r| r.name.clone()).unwrap_or_default()
}

fn commit_parts(commit: Option<&pfs::Commit>) -> (String, String) {
    (
        commit_repo(commit).to_owned(),
        commit.map(|c| c.id.clone()).unwrap_or_default(),
    )
}

fn file_parts(file: Option<&pfs::File>) -> (String, String, String) {
    let (repo, id) = commit_parts(file.and_then(|f| f.commit.as_ref()));
    (repo, id, file.map(|f| f.path.clone()).unwrap_or_default())
}

/// A commit's files and what file listings say about the commit.
struct CommitFiles {
    repo: String,
    id: String,
    /// When the commit finished (`FileInfo.committed`); `None` while it is open.
    finished: Option<prost_types::Timestamp>,
    tree: FileTree,
}

/// Reads a commit's files (open or finished).
fn commit_tree(cluster: &Cluster, repo: &str, reference: &str) -> PachdResult<CommitFiles> {
    let state = cluster.lock();
    let record = state.commit(repo, reference)?;
    let id = record
        .info
        .commit
        .as_ref()
        .map(|c| c.id.clone())
        .unwrap_or_default();
    let tree = state
        .commit_files(cluster.bucket(), record)
        .map_err(|why| {
            PachdError::unsupported(&format!(
                "reading files of commit {id} in repo {repo} ({why})"
            ))
        })?;
    Ok(CommitFiles {
        repo: repo.to_owned(),
        id,
        finished: record.info.finished,
        tree,
    })
}

fn file_info(files: &CommitFiles, node: &Node) -> pfs::FileInfo {
    let (path, file_type, size_bytes) = match node {
        Node::File(path, entry) => (path, pfs::FileType::File, entry.size),
        Node::Dir(path, size, _) => (path, pfs::FileType::Dir, *size),
    };
    let mut info = pfs::FileInfo {
        file: Some(pfs::File {
            commit: Some(commit_msg(&files.repo, &files.id)),
            path: path.clone(),
        }),
        file_type: file_type as i32,
        size_bytes,
        committed: files.finished,
        ..Default::default()
    };
    // No `children` for directories: pachd's hashtrees never fill a directory node's
    // children, so InspectFile of a directory shows none.
    if let Node::File(_, entry) = node {
        info.objects = entry
            .objects
            .iter()
            .map(|h| pfs::Object { hash: h.clone() })
            .collect();
    }
    info
}

/// A listing entry without the objects holding its content, as pachd lists files unless
/// asked for `full` ones (globs never are).
fn without_contents(mut info: pfs::FileInfo) -> pfs::FileInfo {
    info.objects.clear();
    info.block_refs.clear();
    info
}

fn read_file(bucket: &Bucket, entry: &super::tree::FileEntry) -> PachdResult<Vec<u8>> {
    let mut content = Vec::new();
    for hash in &entry.objects {
        let bytes = bucket
            .read_object(hash)
            .map_err(|err| PachdError::io("read object", &err))?
            .ok_or_else(|| PachdError::object_not_found(hash))?;
        content.extend(bytes);
    }
    for (block, lower, upper) in &entry.block_refs {
        if !bucket.has_block(block) {
            return Err(PachdError::block_not_found(block));
        }
        if lower < upper {
            let bytes = bucket
                .read_block_range(block, *lower, *upper)
                .map_err(|err| PachdError::io("read block", &err))?;
            content.extend(bytes);
        }
    }
    Ok(content)
}

fn list_files(
    cluster: &Cluster,
    request: &pfs::ListFileRequest,
) -> PachdResult<Vec<pfs::FileInfo>> {
    let (repo, reference, path) = file_parts(request.file.as_ref());
    let files = commit_tree(cluster, &repo, &reference)?;
    let nodes = files
        .tree
        .list(&path)
        .ok_or_else(|| PachdError::file_not_found(&repo, &files.id, &clean_path(&path)))?;
    Ok(nodes
        .iter()
        .map(|n| file_info(&files, n))
        .map(|info| {
            if request.full {
                info
            } else {
                without_contents(info)
            }
        })
        .collect())
}

fn glob_files(
    cluster: &Cluster,
    commit: Option<&pfs::Commit>,
    pattern: &str,
) -> PachdResult<Vec<pfs::FileInfo>> {
    let (repo, reference) = commit_parts(commit);
    let files = commit_tree(cluster, &repo, &reference)?;
    Ok(files
        .tree
        .glob(pattern)
        .iter()
        .map(|n| without_contents(file_info(&files, n)))
        .collect())
}

/// One file write of a PutFile stream.
struct FileWrite {
    repo: String,
    reference: String,
    path: String,
    overwrite: Option<i64>,
    delete: bool,
    content: Vec<u8>,
}

fn apply_writes(cluster: &Cluster, writes: Vec<FileWrite>) -> PachdResult<Vec<String>> {
    let mut objects = Vec::with_capacity(writes.len());
    for write in &writes {
        objects.push(
            if write.delete || (write.content.is_empty() && write.overwrite.is_none()) {
                None
            } else {
                Some((
                    cluster
                        .bucket()
                        .put_object(&write.content)
                        .map_err(|err| PachdError::io("write object", &err))?,
                    write.content.len() as u64,
                ))
            },
        );
    }
    cluster.mutate(|state, bucket| {
        let mut auto: HashMap<(String, String), String> = HashMap::new();
        let mut touched = Vec::new();
        for (write, object) in writes.iter().zip(objects) {
            let key = (write.repo.clone(), write.reference.clone());
            let id = match auto.get(&key) {
                Some(id) => id.clone(),
                None => match state.open_commit_for_write(&write.repo, &write.reference)? {
                    Some(id) => id,
                    None => {
                        let commit =
                            state.start_commit(bucket, &write.repo, "", &write.reference, "")?;
                        auto.insert(key, commit.id.clone());
                        commit.id
                    }
                },
            };
            state.write_file(
                &write.repo,
                &id,
                &write.path,
                object,
                write.overwrite,
                write.delete,
            )?;
            touched.push(id);
        }
        for ((repo, _), id) in auto {
            state.finish_commit(bucket, &repo, &id, "")?;
        }
        Ok(touched)
    })
}

/// PutFile on a branch, for in-process loaders.
pub fn put_file_on_branch(
    cluster: &Cluster,
    repo: &str,
    branch: &str,
    path: &str,
    content: &[u8],
) -> PachdResult<String> {
    let ids = apply_writes(
        cluster,
        vec![FileWrite {
            repo: repo.to_owned(),
            reference: branch.to_owned(),
            path: path.to_owned(),
            overwrite: None,
            delete: false,
            content: content.to_vec(),
        }],
    )?;
    Ok(ids.into_iter().next().unwrap_or_default())
}

/// pfs.API.
pub struct Svc {
    cluster: Cluster,
}

#[tonic::async_trait]
impl pfs::api_server::Api for Svc {
    async fn create_repo(
        &self,
        request: Request<pfs::CreateRepoRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let name = repo_of(req.repo.as_ref());
        self.cluster
            .mutate(|state, _| state.create_repo(&name, &req.description, req.update))?;
        Ok(Response::new(()))
    }

    async fn inspect_repo(
        &self,
        request: Request<pfs::InspectRepoRequest>,
    ) -> Result<Response<pfs::RepoInfo>, Status> {
        self.cluster.caller(request.metadata())?;
        let name = repo_of(request.get_ref().repo.as_ref());
        Ok(Response::new(self.cluster.lock().repo_info(&name)?))
    }

    async fn list_repo(
        &self,
        request: Request<pfs::ListRepoRequest>,
    ) -> Result<Response<pfs::ListRepoResponse>, Status> {
        self.cluster.caller(request.metadata())?;
        Ok(Response::new(pfs::ListRepoResponse {
            repo_info: self.cluster.lock().list_repos(),
        }))
    }

    async fn delete_repo(
        &self,
        request: Request<pfs::DeleteRepoRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let name = repo_of(req.repo.as_ref());
        self.cluster
            .mutate(|state, _| state.delete_repo(&name, req.force, req.all))?;
        Ok(Response::new(()))
    }

    async fn start_commit(
        &self,
        request: Request<pfs::StartCommitRequest>,
    ) -> Result<Response<pfs::Commit>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let (repo, parent) = commit_parts(req.parent.as_ref());
        let commit = self.cluster.mutate(|state, bucket| {
            state.start_commit(bucket, &repo, &parent, &req.branch, &req.description)
        })?;
        Ok(Response::new(commit))
    }

    async fn finish_commit(
        &self,
        request: Request<pfs::FinishCommitRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let (repo, id) = commit_parts(req.commit.as_ref());
        self.cluster
            .mutate(|state, bucket| state.finish_commit(bucket, &repo, &id, &req.description))?;
        Ok(Response::new(()))
    }

    async fn inspect_commit(
        &self,
        request: Request<pfs::InspectCommitRequest>,
    ) -> Result<Response<pfs::CommitInfo>, Status> {
        self.cluster.caller(request.metadata())?;
        let (repo, id) = commit_parts(request.get_ref().commit.as_ref());
        Ok(Response::new(self.cluster.lock().commit_info(&repo, &id)?))
    }

    async fn list_commit(
        &self,
        request: Request<pfs::ListCommitRequest>,
    ) -> Result<Response<pfs::CommitInfos>, Status> {
        self.cluster.caller(request.metadata())?;
        Ok(Response::new(pfs::CommitInfos {
            commit_info: self.commits(request.get_ref())?,
        }))
    }

    type ListCommitStreamStream = BoxStream<pfs::CommitInfo>;

    async fn list_commit_stream(
        &self,
        request: Request<pfs::ListCommitRequest>,
    ) -> Result<Response<Self::ListCommitStreamStream>, Status> {
        self.cluster.caller(request.metadata())?;
        Ok(Response::new(stream_of(self.commits(request.get_ref())?)))
    }

    async fn delete_commit(
        &self,
        request: Request<pfs::DeleteCommitRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let (repo, id) = commit_parts(request.get_ref().commit.as_ref());
        self.cluster
            .mutate(|state, _| state.delete_commit(&repo, &id))?;
        Ok(Response::new(()))
    }

    async fn build_commit(
        &self,
        request: Request<pfs::BuildCommitRequest>,
    ) -> Result<Response<pfs::Commit>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        Ok(Response::new(self.cluster.mutate(|state, bucket| {
            state.build_commit(bucket, &req)
        })?))
    }

    async fn create_branch(
        &self,
        request: Request<pfs::CreateBranchRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let branch = req.branch.clone().unwrap_or_else(|| pfs::Branch {
            repo: req.head.as_ref().and_then(|h| h.repo.clone()),
            name: req.s_branch.clone(),
        });
        let repo = repo_of(branch.repo.as_ref());
        self.cluster.mutate(|state, _| {
            state.create_branch(&repo, &branch.name, req.head.as_ref(), &req.provenance)
        })?;
        Ok(Response::new(()))
    }

    async fn inspect_branch(
        &self,
        request: Request<pfs::InspectBranchRequest>,
    ) -> Result<Response<pfs::BranchInfo>, Status> {
        self.cluster.caller(request.metadata())?;
        let branch = request.into_inner().branch.unwrap_or_default();
        let repo = repo_of(branch.repo.as_ref());
        Ok(Response::new(
            self.cluster.lock().branch_info(&repo, &branch.name)?,
        ))
    }

    async fn list_branch(
        &self,
        request: Request<pfs::ListBranchRequest>,
    ) -> Result<Response<pfs::BranchInfos>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let repo = repo_of(req.repo.as_ref());
        Ok(Response::new(pfs::BranchInfos {
            branch_info: self.cluster.lock().list_branches(&repo, req.reverse)?,
        }))
    }

    async fn delete_branch(
        &self,
        request: Request<pfs::DeleteBranchRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let branch = request.into_inner().branch.unwrap_or_default();
        let repo = repo_of(branch.repo.as_ref());
        self.cluster
            .mutate(|state, _| state.delete_branch(&repo, &branch.name))?;
        Ok(Response::new(()))
    }

    async fn put_file(
        &self,
        request: Request<Streaming<pfs::PutFileRequest>>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let mut stream = request.into_inner();
        let mut writes: Vec<FileWrite> = Vec::new();
        while let Some(message) = stream.message().await? {
            if !message.url.is_empty() {
                return Err(PachdError::unsupported("PutFile from a URL").into());
            }
            if let Some(file) = message.file.as_ref() {
                let (repo, reference, path) = file_parts(Some(file));
                if repo.is_empty() {
                    return Err(PachdError::invalid("PutFile: file.commit.repo must be set").into());
                }
                writes.push(FileWrite {
                    repo,
                    reference,
                    path,
                    overwrite: message.overwrite_index.map(|o| o.index),
                    delete: message.delete,
                    content: Vec::new(),
                });
            }
            let Some(current) = writes.last_mut() else {
                return Err(
                    PachdError::invalid("PutFile: the first request must name a file").into(),
                );
            };
            current.content.extend_from_slice(&message.value);
        }
        apply_writes(&self.cluster, writes)?;
        Ok(Response::new(()))
    }

    type GetFileStream = BoxStream<Vec<u8>>;

    async fn get_file(
        &self,
        request: Request<pfs::GetFileRequest>,
    ) -> Result<Response<Self::GetFileStream>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let (repo, reference, path) = file_parts(req.file.as_ref());
        let CommitFiles { id, tree, .. } = commit_tree(&self.cluster, &repo, &reference)?;
        let path = clean_path(&path);
        let entry = match tree.node(&path) {
            Some(Node::File(_, entry)) => entry,
            Some(Node::Dir(..)) => {
                return Err(PachdError::unknown(format!("cannot get directory {path}")).into());
            }
            None => return Err(PachdError::file_not_found(&repo, &id, &path).into()),
        };
        let content = read_file(self.cluster.bucket(), &entry)?;
        let start = usize::try_from(req.offset_bytes.max(0))
            .unwrap_or(0)
            .min(content.len());
        let end = if req.size_bytes > 0 {
            start
                .saturating_add(usize::try_from(req.size_bytes).unwrap_or(usize::MAX))
                .min(content.len())
        } else {
            content.len()
        };
        let chunks: Vec<Vec<u8>> = content[start..end]
            .chunks(2 << 20)
            .map(<[u8]>::to_vec)
            .collect();
        Ok(Response::new(stream_of(chunks)))
    }

    async fn inspect_file(
        &self,
        request: Request<pfs::InspectFileRequest>,
    ) -> Result<Response<pfs::FileInfo>, Status> {
        self.cluster.caller(request.metadata())?;
        let (repo, reference, path) = file_parts(request.get_ref().file.as_ref());
        let files = commit_tree(&self.cluster, &repo, &reference)?;
        let node = files
            .tree
            .node(&path)
            .ok_or_else(|| PachdError::file_not_found(&repo, &files.id, &clean_path(&path)))?;
        Ok(Response::new(file_info(&files, &node)))
    }

    async fn list_file(
        &self,
        request: Request<pfs::ListFileRequest>,
    ) -> Result<Response<pfs::FileInfos>, Status> {
        self.cluster.caller(request.metadata())?;
        Ok(Response::new(pfs::FileInfos {
            file_info: list_files(&self.cluster, request.get_ref())?,
        }))
    }

    type ListFileStreamStream = BoxStream<pfs::FileInfo>;

    async fn list_file_stream(
        &self,
        request: Request<pfs::ListFileRequest>,
    ) -> Result<Response<Self::ListFileStreamStream>, Status> {
        self.cluster.caller(request.metadata())?;
        Ok(Response::new(stream_of(list_files(
            &self.cluster,
            request.get_ref(),
        )?)))
    }

    async fn glob_file(
        &self,
        request: Request<pfs::GlobFileRequest>,
    ) -> Result<Response<pfs::FileInfos>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.get_ref();
        Ok(Response::new(pfs::FileInfos {
            file_info: glob_files(&self.cluster, req.commit.as_ref(), &req.pattern)?,
        }))
    }

    type GlobFileStreamStream = BoxStream<pfs::FileInfo>;

    async fn glob_file_stream(
        &self,
        request: Request<pfs::GlobFileRequest>,
    ) -> Result<Response<Self::GlobFileStreamStream>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.get_ref();
        Ok(Response::new(stream_of(glob_files(
            &self.cluster,
            req.commit.as_ref(),
            &req.pattern,
        )?)))
    }

    async fn delete_file(
        &self,
        request: Request<pfs::DeleteFileRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let (repo, reference, path) = file_parts(request.get_ref().file.as_ref());
        apply_writes(
            &self.cluster,
            vec![FileWrite {
                repo,
                reference,
                path,
                overwrite: None,
                delete: true,
                content: Vec::new(),
            }],
        )?;
        Ok(Response::new(()))
    }

    async fn delete_all(&self, request: Request<()>) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        self.cluster.mutate(|state, _| {
            state.delete_all_repos();
            Ok(())
        })?;
        Ok(Response::new(()))
    }
}

impl Svc {
    fn commits(&self, req: &pfs::ListCommitRequest) -> PachdResult<Vec<pfs::CommitInfo>> {
        let repo = repo_of(req.repo.as_ref());
        self.cluster.lock().list_commits(
            &repo,
            req.from.as_ref().map(|c| c.id.as_str()),
            req.to.as_ref().map(|c| c.id.as_str()),
            req.number,
            req.reverse,
        )
    }
}

/// pfs.ObjectAPI.
pub struct ObjectSvc {
    cluster: Cluster,
}

fn io_status(what: &str, err: std::io::Error) -> Status {
    PachdError::io(what, &err).into()
}

#[tonic::async_trait]
impl pfs::object_api_server::ObjectApi for ObjectSvc {
    async fn put_object(
        &self,
        request: Request<Streaming<pfs::PutObjectRequest>>,
    ) -> Result<Response<pfs::Object>, Status> {
        self.cluster.caller(request.metadata())?;
        let mut stream = request.into_inner();
        let mut content = Vec::new();
        let mut tags = Vec::new();
        while let Some(message) = stream.message().await? {
            content.extend(message.value);
            tags.extend(message.tags);
        }
        let hash = self
            .cluster
            .bucket()
            .put_object(&content)
            .map_err(|e| io_status("write object", e))?;
        for tag in tags {
            self.cluster
                .bucket()
                .put_tag(&tag.name, &hash)
                .map_err(|e| io_status("write tag", e))?;
        }
        Ok(Response::new(pfs::Object { hash }))
    }

    async fn create_object(
        &self,
        request: Request<pfs::CreateObjectRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let hash = req.object.map(|o| o.hash).unwrap_or_default();
        self.cluster
            .bucket()
            .put_object_ref(&hash, &req.block_ref.unwrap_or_default())
            .map_err(|e| io_status("write object", e))?;
        Ok(Response::new(()))
    }

    type GetObjectStream = BoxStream<Vec<u8>>;

    async fn get_object(
        &self,
        request: Request<pfs::Object>,
    ) -> Result<Response<Self::GetObjectStream>, Status> {
        self.cluster.caller(request.metadata())?;
        let hash = request.into_inner().hash;
        let content = self
            .cluster
            .bucket()
            .read_object(&hash)
            .map_err(|e| io_status("read object", e))?
            .ok_or_else(|| PachdError::object_not_found(&hash))?;
        Ok(Response::new(stream_of(
            content.chunks(CHUNK).map(<[u8]>::to_vec).collect(),
        )))
    }

    async fn put_block(
        &self,
        request: Request<Streaming<pfs::PutBlockRequest>>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let mut stream = request.into_inner();
        let mut writer = None;
        while let Some(message) = stream.message().await? {
            if writer.is_none() {
                let id = message
                    .block
                    .as_ref()
                    .map(|b| b.hash.clone())
                    .unwrap_or_default();
                writer = Some(
                    self.cluster
                        .bucket()
                        .block_writer(&id)
                        .map_err(|e| io_status("write block", e))?,
                );
            }
            if let Some(w) = writer.as_mut() {
                w.write(&message.value)
                    .map_err(|e| io_status("write block", e))?;
            }
        }
        if let Some(w) = writer {
            w.finish().map_err(|e| io_status("write block", e))?;
        }
        Ok(Response::new(()))
    }

    type GetBlockStream = BoxStream<Vec<u8>>;

    async fn get_block(
        &self,
        request: Request<pfs::GetBlockRequest>,
    ) -> Result<Response<Self::GetBlockStream>, Status> {
        self.cluster.caller(request.metadata())?;
        let id = request
            .into_inner()
            .block
            .map(|b| b.hash)
            .unwrap_or_default();
        if !self.cluster.bucket().has_block(&id) {
            return Err(PachdError::block_not_found(&id).into());
        }
        let mut file = self
            .cluster
            .bucket()
            .open_block(&id)
            .map_err(|e| io_status("read block", e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            loop {
                let mut chunk = Vec::new();
                match (&mut file).take(CHUNK as u64).read_to_end(&mut chunk) {
                    Ok(0) => break,
                    Ok(_) => {
                        if tx.blocking_send(Ok(chunk)).is_err() {
                            break;
                        }
                    }
                    Err(err) => {
                        let _ = tx.blocking_send(Err(io_status("read block", err)));
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type ListBlockStream = BoxStream<pfs::Block>;

    async fn list_block(
        &self,
        request: Request<pfs::ListBlockRequest>,
    ) -> Result<Response<Self::ListBlockStream>, Status> {
        self.cluster.caller(request.metadata())?;
        let blocks = self
            .cluster
            .bucket()
            .list_blocks()
            .map_err(|e| io_status("list blocks", e))?;
        Ok(Response::new(stream_of(
            blocks.into_iter().map(|hash| pfs::Block { hash }).collect(),
        )))
    }

    async fn tag_object(
        &self,
        request: Request<pfs::TagObjectRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let hash = req.object.map(|o| o.hash).unwrap_or_default();
        for tag in req.tags {
            self.cluster
                .bucket()
                .put_tag(&tag.name, &hash)
                .map_err(|e| io_status("write tag", e))?;
        }
        Ok(Response::new(()))
    }

    async fn inspect_object(
        &self,
        request: Request<pfs::Object>,
    ) -> Result<Response<pfs::ObjectInfo>, Status> {
        self.cluster.caller(request.metadata())?;
        let hash = request.into_inner().hash;
        let block_ref = self
            .cluster
            .bucket()
            .object_ref(&hash)
            .map_err(|e| io_status("read object", e))?
            .ok_or_else(|| PachdError::object_not_found(&hash))?;
        Ok(Response::new(pfs::ObjectInfo {
            object: Some(pfs::Object { hash }),
            block_ref: Some(block_ref),
        }))
    }

    type ListObjectsStream = BoxStream<pfs::ObjectInfo>;

    async fn list_objects(
        &self,
        request: Request<pfs::ListObjectsRequest>,
    ) -> Result<Response<Self::ListObjectsStream>, Status> {
        self.cluster.caller(request.metadata())?;
        let bucket = self.cluster.bucket();
        let mut infos = Vec::new();
        for hash in bucket
            .list_objects()
            .map_err(|e| io_status("list objects", e))?
        {
            let block_ref = bucket
                .object_ref(&hash)
                .map_err(|e| io_status("read object", e))?;
            infos.push(pfs::ObjectInfo {
                object: Some(pfs::Object { hash }),
                block_ref,
            });
        }
        Ok(Response::new(stream_of(infos)))
    }

    type ListTagsStream = BoxStream<pfs::ListTagsResponse>;

    async fn list_tags(
        &self,
        request: Request<pfs::ListTagsRequest>,
    ) -> Result<Response<Self::ListTagsStream>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let bucket = self.cluster.bucket();
        let mut out = Vec::new();
        for name in bucket.list_tags().map_err(|e| io_status("list tags", e))? {
            if !name.starts_with(&req.prefix) {
                continue;
            }
            let object = if req.include_object {
                bucket
                    .tag_target(&name)
                    .map_err(|e| io_status("read tag", e))?
                    .map(|hash| pfs::Object { hash })
            } else {
                None
            };
            out.push(pfs::ListTagsResponse {
                tag: Some(pfs::Tag { name }),
                object,
            });
        }
        Ok(Response::new(stream_of(out)))
    }
}

/// pps.API.
pub struct PpsSvc {
    cluster: Cluster,
}

fn pipeline_name(pipeline: Option<&pps::Pipeline>) -> String {
    pipeline.map(|p| p.name.clone()).unwrap_or_default()
}

#[tonic::async_trait]
impl pps::api_server::Api for PpsSvc {
    async fn create_job(
        &self,
        request: Request<pps::CreateJobRequest>,
    ) -> Result<Response<pps::Job>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        Ok(Response::new(
            self.cluster.mutate(|state, _| state.create_job(&req))?,
        ))
    }

    async fn inspect_job(
        &self,
        request: Request<pps::InspectJobRequest>,
    ) -> Result<Response<pps::JobInfo>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.get_ref();
        let id = req.job.as_ref().map(|j| j.id.as_str()).unwrap_or("");
        Ok(Response::new(
            self.cluster
                .lock()
                .job_info(id, req.output_commit.as_ref())?,
        ))
    }

    async fn list_job(
        &self,
        request: Request<pps::ListJobRequest>,
    ) -> Result<Response<pps::JobInfos>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.get_ref();
        let name = pipeline_name(req.pipeline.as_ref());
        Ok(Response::new(pps::JobInfos {
            job_info: self
                .cluster
                .lock()
                .list_jobs(Some(&name), req.output_commit.as_ref())?,
        }))
    }

    type ListJobStreamStream = BoxStream<pps::JobInfo>;

    async fn list_job_stream(
        &self,
        request: Request<pps::ListJobRequest>,
    ) -> Result<Response<Self::ListJobStreamStream>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.get_ref();
        let name = pipeline_name(req.pipeline.as_ref());
        Ok(Response::new(stream_of(
            self.cluster
                .lock()
                .list_jobs(Some(&name), req.output_commit.as_ref())?,
        )))
    }

    async fn delete_job(
        &self,
        request: Request<pps::DeleteJobRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let id = request.into_inner().job.map(|j| j.id).unwrap_or_default();
        self.cluster.mutate(|state, _| state.delete_job(&id))?;
        Ok(Response::new(()))
    }

    async fn stop_job(
        &self,
        request: Request<pps::StopJobRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let id = request.into_inner().job.map(|j| j.id).unwrap_or_default();
        self.cluster.mutate(|state, _| {
            state.update_job(&id, pps::JobState::JobKilled as i32, "job stopped")
        })?;
        Ok(Response::new(()))
    }

    async fn create_pipeline(
        &self,
        request: Request<pps::CreatePipelineRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let transition = self
            .cluster
            .mutate(|state, bucket| state.create_pipeline(bucket, &req))?;
        self.cluster.schedule(transition);
        Ok(Response::new(()))
    }

    async fn inspect_pipeline(
        &self,
        request: Request<pps::InspectPipelineRequest>,
    ) -> Result<Response<pps::PipelineInfo>, Status> {
        self.cluster.caller(request.metadata())?;
        let name = pipeline_name(request.get_ref().pipeline.as_ref());
        Ok(Response::new(self.cluster.lock().pipeline_info(&name)?))
    }

    async fn list_pipeline(
        &self,
        request: Request<pps::ListPipelineRequest>,
    ) -> Result<Response<pps::PipelineInfos>, Status> {
        self.cluster.caller(request.metadata())?;
        let name = pipeline_name(request.get_ref().pipeline.as_ref());
        Ok(Response::new(pps::PipelineInfos {
            pipeline_info: self.cluster.lock().list_pipelines(Some(&name))?,
        }))
    }

    async fn delete_pipeline(
        &self,
        request: Request<pps::DeletePipelineRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let name = pipeline_name(req.pipeline.as_ref());
        self.cluster
            .mutate(|state, _| state.delete_pipeline(&name, req.all, req.keep_repo))?;
        Ok(Response::new(()))
    }

    async fn start_pipeline(
        &self,
        request: Request<pps::StartPipelineRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let name = pipeline_name(request.get_ref().pipeline.as_ref());
        let transition = self
            .cluster
            .mutate(|state, bucket| state.start_pipeline(bucket, &name))?;
        self.cluster.schedule(transition);
        Ok(Response::new(()))
    }

    async fn stop_pipeline(
        &self,
        request: Request<pps::StopPipelineRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let name = pipeline_name(request.get_ref().pipeline.as_ref());
        let transition = self
            .cluster
            .mutate(|state, bucket| state.stop_pipeline(bucket, &name))?;
        self.cluster.schedule(transition);
        Ok(Response::new(()))
    }

    async fn delete_all(&self, request: Request<()>) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        self.cluster.mutate(|state, _| {
            state.delete_all_pipelines();
            Ok(())
        })?;
        Ok(Response::new(()))
    }

    async fn update_job_state(
        &self,
        request: Request<pps::UpdateJobStateRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let id = req.job.as_ref().map(|j| j.id.clone()).unwrap_or_default();
        self.cluster
            .mutate(|state, _| state.update_job(&id, req.state, &req.reason))?;
        Ok(Response::new(()))
    }
}

/// admin.API.
pub struct AdminSvc {
    cluster: Cluster,
}

/// Resolves an extract/restore URL to a file: `file:///path`, or `<svc>://<bucket>/<object>`
/// (s3, gs, gcs, as, wasb, local, minio), which names `<object>` inside this cluster's bucket.
/// Either way the file must lie inside this cluster's bucket.
pub fn url_path(bucket: &Bucket, url: &str) -> PachdResult<std::path::PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err(PachdError::unknown("URL must be <svc>://<bucket>/<object>"));
        }
        return bucket
            .local_dump_path(std::path::Path::new(path))
            .map_err(|_| PachdError::outside_bucket(url));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(PachdError::unknown("URL must be <svc>://<bucket>/<object>"));
    };
    if !matches!(
        scheme,
        "s3" | "gs" | "gcs" | "as" | "wasb" | "local" | "minio"
    ) {
        return Err(PachdError::unknown(format!(
            "unrecognized object store: {scheme}"
        )));
    }
    let Some((_, object)) = rest
        .split_once('/')
        .filter(|(b, o)| !b.is_empty() && !o.is_empty())
    else {
        return Err(PachdError::unknown("URL must be <svc>://<bucket>/<object>"));
    };
    bucket.dump_path(object).map_err(|err| {
        if err.kind() == std::io::ErrorKind::PermissionDenied {
            PachdError::outside_bucket(url)
        } else {
            PachdError::unknown("URL must be <svc>://<bucket>/<object>")
        }
    })
}

#[tonic::async_trait]
impl admin::api_server::Api for AdminSvc {
    type ExtractStream = BoxStream<admin::Op>;

    async fn extract(
        &self,
        request: Request<admin::ExtractRequest>,
    ) -> Result<Response<Self::ExtractStream>, Status> {
        let caller = self.cluster.caller(request.metadata())?;
        let req = request.into_inner();
        let snapshot: State = self.cluster.lock().clone();
        let bucket = self.cluster.bucket().clone();
        let version = self.cluster.version();
        if !req.url.is_empty() {
            let path = url_path(&bucket, &req.url)?;
            let written = tokio::task::spawn_blocking(move || -> PachdResult<()> {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| PachdError::io("create dump directory", &e))?;
                }
                let temp = path.with_extension(format!("partial-{}", new_id()));
                let file =
                    std::fs::File::create(&temp).map_err(|e| PachdError::io("write dump", &e))?;
                let mut writer = DumpWriter::new(std::io::BufWriter::new(file));
                let mut failure = None;
                extract(
                    &snapshot,
                    &bucket,
                    version,
                    &req,
                    &caller,
                    &mut |op| match writer.write_op(&op) {
                        Ok(()) => true,
                        Err(err) => {
                            failure = Some(err);
                            false
                        }
                    },
                )?;
                if let Some(err) = failure {
                    return Err(PachdError::io("write dump", &err));
                }
                let sink = writer
                    .finish()
                    .map_err(|e| PachdError::io("write dump", &e))?;
                let file = sink
                    .into_inner()
                    .map_err(|e| PachdError::io("write dump", &e.into_error()))?;
                file.sync_all()
                    .map_err(|e| PachdError::io("write dump", &e))?;
                std::fs::rename(&temp, &path).map_err(|e| PachdError::io("write dump", &e))
            })
            .await
            .map_err(|err| PachdError::unknown(format!("extract task failed: {err}")))?;
            written?;
            return Ok(Response::new(stream_of(Vec::new())));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<admin::Op, Status>>(4);
        tokio::task::spawn_blocking(move || {
            let result = extract(&snapshot, &bucket, version, &req, &caller, &mut |op| {
                tx.blocking_send(Ok(op)).is_ok()
            });
            if let Err(err) = result {
                let _ = tx.blocking_send(Err(err.into()));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn extract_pipeline(
        &self,
        request: Request<admin::ExtractPipelineRequest>,
    ) -> Result<Response<admin::Op>, Status> {
        self.cluster.caller(request.metadata())?;
        let name = pipeline_name(request.get_ref().pipeline.as_ref());
        let op = extract_pipeline(&self.cluster.lock(), self.cluster.version(), &name)?;
        Ok(Response::new(op))
    }

    async fn restore(
        &self,
        request: Request<Streaming<admin::RestoreRequest>>,
    ) -> Result<Response<()>, Status> {
        let token = token_of(request.metadata());
        let version = self.cluster.version();
        {
            let state = self.cluster.lock();
            if version.has_auth_ops() && state.auth.active {
                let caller = state.caller(token.as_deref())?;
                if !caller.admin {
                    return Err(PachdError::not_authorized(
                        caller.subject.as_deref().unwrap_or("anonymous"),
                        "Restore",
                    )
                    .into());
                }
            }
        }
        let mode = match request
            .metadata()
            .get(RESTORE_MODE_KEY)
            .and_then(|v| v.to_str().ok())
        {
            Some(text) => RestoreMode::parse(text).ok_or_else(|| {
                PachdError::invalid(format!(
                    "{RESTORE_MODE_KEY} must be lenient, strict or check, not '{text}'"
                ))
            })?,
            None if self.cluster.config().strict_restore => RestoreMode::Strict,
            None => RestoreMode::Lenient,
        };
        let mut restorer = Restorer::new(&self.cluster, mode, token)?;
        let mut stream = request.into_inner();
        let mut outcome: PachdResult<()> = Ok(());
        if let Some(first) = stream.message().await? {
            if !first.url.is_empty() {
                let path = url_path(self.cluster.bucket(), &first.url)?;
                while stream.message().await?.is_some() {}
                let mut reader = DumpReader::open(&path)
                    .map_err(|e| PachdError::io(&format!("open {}", first.url), &e))?;
                loop {
                    match reader.next_op() {
                        Ok(Some(op)) => {
                            if let Err(err) = restorer.feed(op) {
                                outcome = Err(err);
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(err) => {
                            outcome = Err(PachdError::io(&format!("read {}", first.url), &err));
                            break;
                        }
                    }
                }
            } else {
                // Ops are applied on a thread of their own (block writes are blocking file
                // I/O) while this task keeps reading the stream, so receiving the next op
                // overlaps writing the last one, as a pachd with its own goroutines does.
                let (ops, mut applying) = tokio::sync::mpsc::channel::<admin::Op>(2);
                let worker = tokio::task::spawn_blocking(move || {
                    while let Some(op) = applying.blocking_recv() {
                        if let Err(err) = restorer.feed(op) {
                            return (restorer, Err(err));
                        }
                    }
                    (restorer, Ok(()))
                });
                let mut next = Some(first);
                let mut received: Result<(), Status> = Ok(());
                while let Some(message) = next {
                    if let Some(op) = message.op {
                        self.cluster.count_restore_op();
                        if ops.send(op).await.is_err() {
                            break; // the worker stopped on an error, reported below
                        }
                    }
                    next = match stream.message().await {
                        Ok(next) => next,
                        Err(status) => {
                            received = Err(status);
                            None
                        }
                    };
                }
                drop(ops);
                let (back, applied) = worker
                    .await
                    .map_err(|err| PachdError::unknown(format!("restore worker failed: {err}")))?;
                // A broken stream ends the call as before: what arrived is applied, nothing
                // is finished.
                received?;
                restorer = back;
                outcome = applied;
            }
        }
        match outcome {
            Ok(()) => {
                restorer.finish()?;
            }
            Err(err) => {
                let _ = restorer.finish();
                return Err(err.into());
            }
        }
        Ok(Response::new(()))
    }

    async fn inspect_cluster(
        &self,
        _request: Request<()>,
    ) -> Result<Response<admin::ClusterInfo>, Status> {
        let state = self.cluster.lock();
        Ok(Response::new(admin::ClusterInfo {
            id: state.cluster_id.clone(),
            deployment_id: if self.cluster.version().minor >= 10 {
                state.deployment_id.clone()
            } else {
                String::new()
            },
        }))
    }
}

/// auth.API.
pub struct AuthSvc {
    cluster: Cluster,
}

impl AuthSvc {
    fn admin(&self, metadata: &tonic::metadata::MetadataMap, operation: &str) -> PachdResult<()> {
        let state = self.cluster.lock();
        if !state.auth.active {
            return Err(PachdError::auth_not_activated());
        }
        let caller = state.caller(token_of(metadata).as_deref())?;
        if !caller.admin {
            return Err(PachdError::not_authorized(
                caller.subject.as_deref().unwrap_or(""),
                operation,
            ));
        }
        Ok(())
    }

    fn need_roles(&self, method: &str) -> PachdResult<()> {
        if self.cluster.version().has_cluster_roles() {
            Ok(())
        } else {
            Err(PachdError::unknown_method("auth.API", method))
        }
    }

    fn need_token_ops(&self, method: &str) -> PachdResult<()> {
        if self.cluster.version().has_auth_ops() {
            Ok(())
        } else {
            Err(PachdError::unknown_method("auth.API", method))
        }
    }
}

#[tonic::async_trait]
impl auth::api_server::Api for AuthSvc {
    async fn activate(
        &self,
        request: Request<auth::ActivateRequest>,
    ) -> Result<Response<auth::ActivateResponse>, Status> {
        let req = request.into_inner();
        let root = if self.cluster.version().has_auth_ops() {
            req.root_token.clone()
        } else {
            String::new()
        };
        let subject = if req.subject.is_empty() {
            req.github_token.clone()
        } else {
            req.subject.clone()
        };
        let token = self
            .cluster
            .mutate(|state, _| state.activate_auth(&subject, &root))?;
        Ok(Response::new(auth::ActivateResponse { pach_token: token }))
    }

    async fn deactivate(
        &self,
        request: Request<auth::DeactivateRequest>,
    ) -> Result<Response<auth::DeactivateResponse>, Status> {
        self.admin(request.metadata(), "Deactivate")?;
        self.cluster.mutate(|state, _| state.deactivate_auth())?;
        Ok(Response::new(auth::DeactivateResponse {}))
    }

    async fn get_configuration(
        &self,
        request: Request<auth::GetConfigurationRequest>,
    ) -> Result<Response<auth::GetConfigurationResponse>, Status> {
        let state = self.cluster.lock();
        if !state.auth.active {
            return Err(PachdError::auth_not_activated().into());
        }
        state.caller(token_of(request.metadata()).as_deref())?;
        Ok(Response::new(auth::GetConfigurationResponse {
            configuration: Some(state.auth.config.clone()),
        }))
    }

    async fn set_configuration(
        &self,
        request: Request<auth::SetConfigurationRequest>,
    ) -> Result<Response<auth::SetConfigurationResponse>, Status> {
        self.admin(request.metadata(), "SetConfiguration")?;
        let mut config = request.into_inner().configuration.unwrap_or_default();
        self.cluster.mutate(|state, _| {
            config.live_config_version = state.auth.config.live_config_version + 1;
            state.auth.config = config;
            Ok(())
        })?;
        Ok(Response::new(auth::SetConfigurationResponse {}))
    }

    async fn get_admins(
        &self,
        request: Request<auth::GetAdminsRequest>,
    ) -> Result<Response<auth::GetAdminsResponse>, Status> {
        let admins = self
            .cluster
            .lock()
            .admins(token_of(request.metadata()).as_deref())?;
        Ok(Response::new(auth::GetAdminsResponse { admins }))
    }

    async fn get_cluster_role_bindings(
        &self,
        request: Request<auth::GetClusterRoleBindingsRequest>,
    ) -> Result<Response<auth::GetClusterRoleBindingsResponse>, Status> {
        self.need_roles("GetClusterRoleBindings")?;
        let state = self.cluster.lock();
        if !state.auth.active {
            return Err(PachdError::auth_not_activated().into());
        }
        state.caller(token_of(request.metadata()).as_deref())?;
        Ok(Response::new(auth::GetClusterRoleBindingsResponse {
            bindings: state
                .auth
                .roles
                .iter()
                .map(|(p, roles)| {
                    (
                        p.clone(),
                        auth::ClusterRoles {
                            roles: roles.clone(),
                        },
                    )
                })
                .collect(),
        }))
    }

    async fn modify_cluster_role_binding(
        &self,
        request: Request<auth::ModifyClusterRoleBindingRequest>,
    ) -> Result<Response<auth::ModifyClusterRoleBindingResponse>, Status> {
        self.need_roles("ModifyClusterRoleBinding")?;
        self.admin(request.metadata(), "ModifyClusterRoleBinding")?;
        let req = request.into_inner();
        let roles = req.roles.map(|r| r.roles).unwrap_or_default();
        self.cluster
            .mutate(|state, _| state.set_role_binding(&req.principal, roles))?;
        Ok(Response::new(auth::ModifyClusterRoleBindingResponse {}))
    }

    async fn authenticate(
        &self,
        _request: Request<auth::AuthenticateRequest>,
    ) -> Result<Response<auth::AuthenticateResponse>, Status> {
        if !self.cluster.lock().auth.active {
            return Err(PachdError::auth_not_activated().into());
        }
        Err(PachdError::unsupported("Authenticate (use GetAuthToken as an admin)").into())
    }

    async fn who_am_i(
        &self,
        request: Request<auth::WhoAmIRequest>,
    ) -> Result<Response<auth::WhoAmIResponse>, Status> {
        Ok(Response::new(
            self.cluster
                .lock()
                .who_am_i(token_of(request.metadata()).as_deref())?,
        ))
    }

    async fn get_acl(
        &self,
        request: Request<auth::GetAclRequest>,
    ) -> Result<Response<auth::GetAclResponse>, Status> {
        let state = self.cluster.lock();
        if !state.auth.active {
            return Err(PachdError::auth_not_activated().into());
        }
        state.caller(token_of(request.metadata()).as_deref())?;
        Ok(Response::new(state.acl(&request.get_ref().repo)?))
    }

    async fn set_acl(
        &self,
        request: Request<auth::SetAclRequest>,
    ) -> Result<Response<auth::SetAclResponse>, Status> {
        self.admin(request.metadata(), "SetACL")?;
        let req = request.into_inner();
        self.cluster
            .mutate(|state, _| state.set_acl(&req.repo, &req.entries))?;
        Ok(Response::new(auth::SetAclResponse {}))
    }

    async fn get_auth_token(
        &self,
        request: Request<auth::GetAuthTokenRequest>,
    ) -> Result<Response<auth::GetAuthTokenResponse>, Status> {
        self.admin(request.metadata(), "GetAuthToken")?;
        let req = request.into_inner();
        let subject = if req.subject.is_empty() {
            "robot:anonymous".to_owned()
        } else if req.subject.contains(':') {
            req.subject.clone()
        } else {
            format!("github:{}", req.subject)
        };
        let token = self
            .cluster
            .mutate(|state, _| state.new_token(&subject, req.ttl))?;
        Ok(Response::new(auth::GetAuthTokenResponse { subject, token }))
    }

    async fn extract_auth_tokens(
        &self,
        request: Request<auth::ExtractAuthTokensRequest>,
    ) -> Result<Response<auth::ExtractAuthTokensResponse>, Status> {
        self.need_token_ops("ExtractAuthTokens")?;
        self.admin(request.metadata(), "ExtractAuthTokens")?;
        Ok(Response::new(auth::ExtractAuthTokensResponse {
            tokens: self.cluster.lock().extract_tokens()?,
        }))
    }

    async fn restore_auth_token(
        &self,
        request: Request<auth::RestoreAuthTokenRequest>,
    ) -> Result<Response<auth::RestoreAuthTokenResponse>, Status> {
        self.need_token_ops("RestoreAuthToken")?;
        self.admin(request.metadata(), "RestoreAuthToken")?;
        let token = request.into_inner().token.unwrap_or_default();
        self.cluster
            .mutate(|state, _| state.restore_token(&token))?;
        Ok(Response::new(auth::RestoreAuthTokenResponse {}))
    }
}

/// enterprise.API.
pub struct EnterpriseSvc {
    cluster: Cluster,
}

impl EnterpriseSvc {
    fn state(&self) -> (i32, Option<enterprise::TokenInfo>, String) {
        let state = self.cluster.lock();
        let expires = state
            .enterprise
            .expires
            .map(|seconds| prost_types::Timestamp { seconds, nanos: 0 });
        match &state.enterprise.activation_code {
            None => (enterprise::State::None as i32, None, String::new()),
            Some(code) if state.enterprise_active() => (
                enterprise::State::Active as i32,
                Some(enterprise::TokenInfo { expires }),
                code.clone(),
            ),
            Some(code) => (
                enterprise::State::Expired as i32,
                Some(enterprise::TokenInfo { expires }),
                code.clone(),
            ),
        }
    }
}

#[tonic::async_trait]
impl enterprise::api_server::Api for EnterpriseSvc {
    async fn activate(
        &self,
        request: Request<enterprise::ActivateRequest>,
    ) -> Result<Response<enterprise::ActivateResponse>, Status> {
        let req = request.into_inner();
        let expires = self
            .cluster
            .mutate(|state, _| state.activate_enterprise(&req.activation_code, req.expires))?;
        Ok(Response::new(enterprise::ActivateResponse {
            info: Some(enterprise::TokenInfo {
                expires: Some(expires),
            }),
        }))
    }

    async fn get_state(
        &self,
        _request: Request<enterprise::GetStateRequest>,
    ) -> Result<Response<enterprise::GetStateResponse>, Status> {
        let (state, info, code) = self.state();
        Ok(Response::new(enterprise::GetStateResponse {
            state,
            info,
            activation_code: code,
        }))
    }

    async fn get_activation_code(
        &self,
        _request: Request<enterprise::GetActivationCodeRequest>,
    ) -> Result<Response<enterprise::GetActivationCodeResponse>, Status> {
        if self.cluster.version().minor < 12 {
            return Err(PachdError::unknown_method("enterprise.API", "GetActivationCode").into());
        }
        let (state, info, code) = self.state();
        Ok(Response::new(enterprise::GetActivationCodeResponse {
            state,
            info,
            activation_code: code,
        }))
    }

    async fn deactivate(
        &self,
        _request: Request<enterprise::DeactivateRequest>,
    ) -> Result<Response<enterprise::DeactivateResponse>, Status> {
        self.cluster.mutate(|state, _| {
            state.enterprise = Default::default();
            Ok(())
        })?;
        Ok(Response::new(enterprise::DeactivateResponse {}))
    }
}

/// versionpb.API.
pub struct VersionSvc {
    cluster: Cluster,
}

#[tonic::async_trait]
impl versionpb::api_server::Api for VersionSvc {
    async fn get_version(
        &self,
        _request: Request<()>,
    ) -> Result<Response<versionpb::Version>, Status> {
        let version = self.cluster.version();
        Ok(Response::new(versionpb::Version {
            major: 1,
            minor: version.minor,
            micro: version.micro,
            additional: String::new(),
        }))
    }
}

/// health.Health.
pub struct HealthSvc;

#[tonic::async_trait]
impl health::health_server::Health for HealthSvc {
    async fn health(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
}

/// transaction.API (transactions are accepted and finished empty; requests are not queued).
pub struct TransactionSvc {
    cluster: Cluster,
}

#[tonic::async_trait]
impl transaction::api_server::Api for TransactionSvc {
    async fn start_transaction(
        &self,
        request: Request<transaction::StartTransactionRequest>,
    ) -> Result<Response<transaction::Transaction>, Status> {
        self.cluster.caller(request.metadata())?;
        Ok(Response::new(transaction::Transaction { id: new_id() }))
    }

    async fn inspect_transaction(
        &self,
        request: Request<transaction::InspectTransactionRequest>,
    ) -> Result<Response<transaction::TransactionInfo>, Status> {
        self.cluster.caller(request.metadata())?;
        Ok(Response::new(transaction::TransactionInfo {
            transaction: request.into_inner().transaction,
            started: Some(now()),
            ..Default::default()
        }))
    }

    async fn delete_transaction(
        &self,
        request: Request<transaction::DeleteTransactionRequest>,
    ) -> Result<Response<()>, Status> {
        self.cluster.caller(request.metadata())?;
        Ok(Response::new(()))
    }

    async fn list_transaction(
        &self,
        request: Request<transaction::ListTransactionRequest>,
    ) -> Result<Response<transaction::TransactionInfos>, Status> {
        self.cluster.caller(request.metadata())?;
        Ok(Response::new(transaction::TransactionInfos::default()))
    }

    async fn finish_transaction(
        &self,
        request: Request<transaction::FinishTransactionRequest>,
    ) -> Result<Response<transaction::TransactionInfo>, Status> {
        self.cluster.caller(request.metadata())?;
        Ok(Response::new(transaction::TransactionInfo {
            transaction: request.into_inner().transaction,
            started: Some(now()),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_dump_outside_the_clusters_bucket_is_refused_naming_the_url() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bucket = Bucket::open(&dir.path().join("bucket")).expect("bucket");
        let outside = dir.path().join("secret");
        std::fs::write(&outside, "not a dump").expect("write");
        std::os::unix::fs::symlink(&outside, bucket.root().join("link")).expect("symlink");
        std::os::unix::fs::symlink(dir.path(), bucket.root().join("up")).expect("symlink");
        let root = bucket.root().display().to_string();
        for url in [
            "file:///etc/passwd".to_owned(),
            format!("file://{}", outside.display()),
            format!("file://{root}/../secret"),
            format!("file://{root}/link"),
            format!("file://{root}/up/secret"),
            "s3://bucket/link".to_owned(),
            "s3://bucket/up/secret".to_owned(),
        ] {
            let error = url_path(&bucket, &url).expect_err(&url);
            assert_eq!(error.code, tonic::Code::PermissionDenied, "{url}");
            assert_eq!(
                error.message,
                format!(
                    "URL {url} is outside this cluster's bucket; the ankus sandbox reads and \
                     writes dumps only there"
                )
            );
        }
        assert_eq!(
            url_path(&bucket, &format!("file://{root}/backups/full.dump")).expect("inside"),
            bucket.root().join("backups/full.dump")
        );
        assert_eq!(
            url_path(&bucket, "s3://bucket/backups/full.dump").expect("inside"),
            bucket.root().join("backups/full.dump")
        );
    }
}
