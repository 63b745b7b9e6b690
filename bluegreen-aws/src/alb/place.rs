//! Where an ALB router's forward action lives: a listener's default actions or one rule's.

use std::fmt;

use aws_sdk_elasticloadbalancingv2::types::Action;
use aws_sdk_elasticloadbalancingv2::Client;
use bluegreen_core::{Error, Result};

use crate::error::AwsError;

/// A listener (its default actions) or a listener rule (its actions).
#[derive(Debug, Clone)]
pub(super) enum Place {
    Listener(String),
    Rule(String),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Listener(arn) => write!(f, "listener {arn}"),
            Self::Rule(arn) => write!(f, "rule {arn}"),
        }
    }
}

impl Place {
    /// The actions, as the ALB serves them.
    pub(super) async fn actions(&self, client: &Client) -> Result<Vec<Action>> {
        match self {
            Self::Rule(rule) => {
                let out = client
                    .describe_rules()
                    .rule_arns(rule)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("elasticloadbalancing:DescribeRules", &self.to_string(), e))?;
                let rule = out.rules.unwrap_or_default().into_iter().next();
                Ok(rule.ok_or_else(|| Error::not_found(self.to_string()))?.actions.unwrap_or_default())
            }
            Self::Listener(listener) => {
                let out =
                    client.describe_listeners().listener_arns(listener).send().await.map_err(|e| {
                        AwsError::from_sdk("elasticloadbalancing:DescribeListeners", &self.to_string(), e)
                    })?;
                let listener = out.listeners.unwrap_or_default().into_iter().next();
                Ok(listener.ok_or_else(|| Error::not_found(self.to_string()))?.default_actions.unwrap_or_default())
            }
        }
    }

    /// Replaces the actions.
    pub(super) async fn set_actions(&self, client: &Client, actions: Vec<Action>) -> Result<()> {
        match self {
            Self::Rule(rule) => {
                client
                    .modify_rule()
                    .rule_arn(rule)
                    .set_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("elasticloadbalancing:ModifyRule", &self.to_string(), e))?;
            }
            Self::Listener(listener) => {
                client
                    .modify_listener()
                    .listener_arn(listener)
                    .set_default_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("elasticloadbalancing:ModifyListener", &self.to_string(), e))?;
            }
        }
        Ok(())
    }
}
