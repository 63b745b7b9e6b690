//! Versions as task definition revisions: what a revision runs, and the revision of a version.

use aws_sdk_ecs::types::{
    ContainerDefinition, KeyValuePair, SortOrder, Tag, TaskDefinition, TaskDefinitionField, TaskDefinitionStatus,
};
use bluegreen_core::{Error, Result, Version};

use super::known::Revision;
use super::{EcsFleet, VERSION_KEY};
use crate::error::aws_error;

/// How many of a family's newest revisions are looked at for one that already runs a version.
const REUSE_WINDOW: usize = 10;

/// Whether `version` can be an image tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
pub(super) fn check_version(version: &Version) -> Result<()> {
    let v = version.as_str();
    let ok = !v.is_empty()
        && v.len() <= 128
        && !v.starts_with(['.', '-'])
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("version", format!("{v:?} is not an image tag ([A-Za-z0-9_.-], at most 128)")))
    }
}

impl EcsFleet {
    /// What the revision `arn` runs (remembered: revisions never change).
    pub(super) async fn revision(&self, arn: &str) -> Result<Revision> {
        if let Some(known) = self.revisions.get(arn) {
            return Ok(known);
        }
        let (definition, tags) = self.describe_task_definition(arn).await?;
        let revision = self.summarize(&definition, &tags);
        self.revisions.insert(arn, &revision);
        Ok(revision)
    }

    async fn describe_task_definition(&self, arn: &str) -> Result<(TaskDefinition, Vec<Tag>)> {
        let resource = format!("task definition {arn}");
        let out = self
            .client
            .describe_task_definition()
            .task_definition(arn)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
            .map_err(|e| match aws_error("ecs:DescribeTaskDefinition", &resource, e) {
                // ECS answers a missing revision with a generic ClientException.
                Error::Backend { message, .. } if message.contains("ClientException") => {
                    Error::not_found(format!("{resource} ({message})"))
                }
                other => other,
            })?;
        let definition = out.task_definition.ok_or_else(|| Error::not_found(resource))?;
        Ok((definition, out.tags.unwrap_or_default()))
    }

    fn summarize(&self, definition: &TaskDefinition, tags: &[Tag]) -> Revision {
        let name = format!("{}:{}", definition.family().unwrap_or_default(), definition.revision());
        let container = definition.container_definitions().iter().find(|c| c.name() == Some(self.container.as_str()));
        let port = container
            .and_then(|c| c.port_mappings().first())
            .and_then(|p| p.container_port())
            .and_then(|p| u16::try_from(p).ok());
        let image = container.and_then(ContainerDefinition::image).unwrap_or_default();
        let tagged = tags.iter().find(|t| t.key() == Some(VERSION_KEY)).and_then(Tag::value);
        let version =
            tagged.map(str::to_owned).or_else(|| self.version_in_image(image)).unwrap_or_else(|| name.clone());
        Revision {
            name,
            version: Version::from(version),
            port,
            container: container.map(|c| (image.to_owned(), environment(c))),
        }
    }

    /// The version an image runs, read through the template (`registry/app:{version}`).
    fn version_in_image(&self, image: &str) -> Option<String> {
        let (prefix, suffix) = self.image.split_once("{version}")?;
        let version = image.strip_prefix(prefix)?.strip_suffix(suffix)?;
        (!version.is_empty() && !version.contains(['/', ':'])).then(|| version.to_owned())
    }

    /// The environment `version` gives the container.
    fn env_of(&self, version: &Version) -> Vec<(String, String)> {
        self.env.iter().map(|(k, v)| (k.clone(), v.replace("{version}", version.as_str()))).collect()
    }

    /// Whether `revision` runs `version` as this fleet would register it.
    fn runs(&self, revision: &Revision, version: &Version) -> bool {
        let Some((image, env)) = &revision.container else { return false };
        *image == self.image_of(version) && self.env_of(version).iter().all(|pair| env.contains(pair))
    }

    /// The ARN of a revision of `template`'s family that runs `version`: `template` itself, one of
    /// the family's newest revisions, or a new one registered as a copy of `template`.
    ///
    /// Refuses (before any write) a template without the fleet's container or its port.
    pub(super) async fn ensure_revision(&self, template_arn: &str, version: &Version) -> Result<String> {
        let (template, tags) = self.describe_task_definition(template_arn).await?;
        let summary = self.summarize(&template, &tags);
        if summary.container.is_none() || summary.port.is_none() {
            let names: Vec<&str> = template.container_definitions().iter().filter_map(|c| c.name()).collect();
            return Err(Error::invalid(
                "container",
                format!(
                    "task definition {} has no container {:?} with a port mapping (its containers: {})",
                    summary.name,
                    self.container,
                    names.join(", ")
                ),
            ));
        }
        if summary.version == *version && self.runs(&summary, version) {
            return Ok(template_arn.to_owned());
        }
        let family = template.family().unwrap_or_default();
        let listed = self
            .client
            .list_task_definitions()
            .family_prefix(family)
            .status(TaskDefinitionStatus::Active)
            .sort(SortOrder::Desc)
            .send()
            .await
            .map_err(|e| aws_error("ecs:ListTaskDefinitions", &format!("task definition family {family}"), e))?;
        // Newest first, whatever order the service answered in (the family prefix may match
        // longer family names too).
        let mut arns: Vec<(i64, String)> = listed
            .task_definition_arns
            .unwrap_or_default()
            .into_iter()
            .filter_map(|arn| {
                let (fam, rev) = arn.rsplit('/').next()?.rsplit_once(':')?;
                let rev: i64 = rev.parse().ok()?;
                (fam == family).then(|| (rev, arn.clone()))
            })
            .collect();
        arns.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
        for (_, arn) in arns.into_iter().take(REUSE_WINDOW) {
            let revision = self.revision(&arn).await?;
            if revision.version == *version && self.runs(&revision, version) {
                return Ok(arn);
            }
        }
        self.register_copy(template, tags, version).await
    }

    async fn register_copy(&self, template: TaskDefinition, tags: Vec<Tag>, version: &Version) -> Result<String> {
        let env = self.env_of(version);
        let containers = template
            .container_definitions()
            .iter()
            .map(|c| {
                if c.name() != Some(self.container.as_str()) {
                    return c.clone();
                }
                let mut c = c.clone();
                c.image = Some(self.image_of(version));
                let mut vars: Vec<KeyValuePair> = c
                    .environment()
                    .iter()
                    .filter(|kv| !env.iter().any(|(k, _)| kv.name() == Some(k)))
                    .cloned()
                    .collect();
                vars.extend(env.iter().map(|(k, v)| KeyValuePair::builder().name(k).value(v).build()));
                c.environment = Some(vars);
                c
            })
            .collect();
        // Tags under `aws:` are the service's own and cannot be set.
        let mut tags: Vec<Tag> =
            tags.into_iter().filter(|t| !t.key().is_some_and(|k| k.starts_with("aws:") || k == VERSION_KEY)).collect();
        tags.push(Tag::builder().key(VERSION_KEY).value(version.as_str()).build());
        let family = template.family().unwrap_or_default().to_owned();
        let out = self
            .client
            .register_task_definition()
            .family(&family)
            .set_task_role_arn(template.task_role_arn)
            .set_execution_role_arn(template.execution_role_arn)
            .set_network_mode(template.network_mode)
            .set_container_definitions(Some(containers))
            .set_volumes(template.volumes)
            .set_placement_constraints(template.placement_constraints)
            .set_requires_compatibilities(template.requires_compatibilities)
            .set_cpu(template.cpu)
            .set_memory(template.memory)
            .set_pid_mode(template.pid_mode)
            .set_ipc_mode(template.ipc_mode)
            .set_proxy_configuration(template.proxy_configuration)
            .set_inference_accelerators(template.inference_accelerators)
            .set_ephemeral_storage(template.ephemeral_storage)
            .set_runtime_platform(template.runtime_platform)
            .set_enable_fault_injection(template.enable_fault_injection)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| aws_error("ecs:RegisterTaskDefinition", &format!("task definition family {family}"), e))?;
        let arn = out.task_definition.and_then(|d| d.task_definition_arn).ok_or_else(|| {
            Error::permanent("aws", format!("ecs:RegisterTaskDefinition of {family} returned no ARN"))
        })?;
        tracing::info!(%arn, %version, "registered a task definition revision");
        Ok(arn)
    }
}

fn environment(container: &ContainerDefinition) -> Vec<(String, String)> {
    container
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap_or_default().to_owned(), kv.value().unwrap_or_default().to_owned()))
        .collect()
}
