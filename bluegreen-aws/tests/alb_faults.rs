//! `AlbRouter` against moto with a client interceptor that changes moto's answers, for the
//! paths moto cannot produce by itself (it never reports `draining`, never throttles, never
//! denies): a drain that waits while targets are `draining`, a drain that outlasts its timeout,
//! throttling retried by the SDK, and AccessDenied failing at once with the action named.

mod moto;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, FinalizerInterceptorContextMut,
};
use aws_sdk_elasticloadbalancingv2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_elasticloadbalancingv2::error::BoxError;
use aws_sdk_elasticloadbalancingv2::operation::describe_target_health::DescribeTargetHealthOutput;
use aws_sdk_elasticloadbalancingv2::types::{
    TargetDescription, TargetHealth, TargetHealthDescription, TargetHealthStateEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use bluegreen_aws::AlbRouter;
use bluegreen_core::{Error, MemberState, PoolName, Router, Target, TargetId};
use moto::Moto;

#[derive(Debug, Default)]
struct FaultState {
    /// `DescribeTargetHealth` answers that still list `draining` as draining.
    draining_for: usize,
    draining: Option<(String, i32)>,
    /// Calls answered with `Throttling` (HTTP 400), then the real answer.
    throttle: usize,
    /// Answer every call with `AccessDenied` (HTTP 403).
    deny: bool,
    /// Attempts seen (retries included).
    attempts: usize,
}

/// Rewrites moto's answers as `FaultState` says.
#[derive(Debug, Clone, Default)]
struct Faults(Arc<Mutex<FaultState>>);

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Intercept for Faults {
    fn name(&self) -> &'static str {
        "bluegreen-test-faults"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let mut state = self.state();
        state.attempts += 1;
        let (code, status) = if state.deny {
            ("AccessDenied", 403_u16)
        } else if state.throttle > 0 {
            state.throttle -= 1;
            ("Throttling", 400)
        } else {
            return Ok(());
        };
        let response = context.response_mut();
        *response.status_mut() = status.try_into()?;
        response.headers_mut().remove("content-length");
        *response.body_mut() = format!(
            "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><Error>\
             <Type>Sender</Type><Code>{code}</Code><Message>injected by the test</Message></Error>\
             <RequestId>test</RequestId></ErrorResponse>"
        )
        .into();
        Ok(())
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error_mut() else { return Ok(()) };
        let Some(output) = output.downcast_mut::<DescribeTargetHealthOutput>() else { return Ok(()) };
        let mut state = self.state();
        if let (true, Some((ip, port))) = (state.draining_for > 0, state.draining.clone()) {
            state.draining_for -= 1;
            output.target_health_descriptions.get_or_insert_with(Vec::new).push(
                TargetHealthDescription::builder()
                    .target(TargetDescription::builder().id(ip).port(port).build())
                    .target_health(TargetHealth::builder().state(TargetHealthStateEnum::Draining).build())
                    .build(),
            );
        }
        Ok(())
    }
}

const POLL: Duration = Duration::from_millis(50);

async fn setup(moto: &Moto) -> (AlbRouter, Faults) {
    let sdk = moto.config().load().await;
    let alb = moto.create_alb(&Client::new(&sdk)).await;
    let faults = Faults::default();
    let conf = aws_sdk_elasticloadbalancingv2::config::Builder::from(&sdk).interceptor(faults.clone()).build();
    let router = AlbRouter::from_client(
        Client::from_conf(conf),
        &alb.listener_arn,
        [("blue", alb.blue_arn.clone()), ("green", alb.green_arn.clone())],
    )
    .expect("router")
    .drain_poll_interval(POLL);
    (router, faults)
}

fn target() -> Target {
    Target {
        id: "172.31.1.10:8080".into(),
        address: "172.31.1.10:8080".into(),
        zone: None,
        version: "v1".into(),
        tag: None,
    }
}

async fn state_of(router: &AlbRouter, id: &TargetId) -> Option<MemberState> {
    router.members(&"blue".into()).await.expect("members").into_iter().find(|m| m.id == *id).map(|m| m.state)
}

#[tokio::test]
async fn a_drain_waits_while_targets_are_draining_then_ends() {
    let Some(moto) = Moto::start() else { return };
    let (router, faults) = setup(&moto).await;
    let blue = PoolName::from("blue");
    router.add_targets(&blue, &[target()]).await.expect("add");
    {
        let mut state = faults.state();
        state.draining = Some(("172.31.1.10".into(), 8080));
        state.draining_for = 5; // the first look, then four polls see it draining
    }
    let report = router.drain(&blue, &[target().id], Duration::from_secs(10)).await.expect("drain");
    assert!(!report.timed_out, "{report:?}");
    assert_eq!(faults.state().draining_for, 0, "the drain ended before the ALB said the target was gone");
    assert!(report.elapsed >= POLL * 3, "four polls at 50 ms took only {:?}", report.elapsed);
    assert_eq!(state_of(&router, &target().id).await, Some(MemberState::Disabled));
}

#[tokio::test]
async fn a_drain_that_outlasts_its_timeout_reports_timed_out() {
    let Some(moto) = Moto::start() else { return };
    let (router, faults) = setup(&moto).await;
    let blue = PoolName::from("blue");
    router.add_targets(&blue, &[target()]).await.expect("add");
    {
        let mut state = faults.state();
        state.draining = Some(("172.31.1.10".into(), 8080));
        state.draining_for = usize::MAX;
    }
    let timeout = Duration::from_millis(300);
    let report = router.drain(&blue, &[target().id], timeout).await.expect("drain");
    assert!(report.timed_out, "{report:?}");
    assert!(report.elapsed >= timeout && report.elapsed < Duration::from_secs(5), "{report:?}");
    assert_eq!(state_of(&router, &target().id).await, Some(MemberState::Draining));
}

#[tokio::test]
async fn throttling_is_retried_and_the_call_succeeds() {
    let Some(moto) = Moto::start() else { return };
    let (router, faults) = setup(&moto).await;
    router.split().await.expect("the router's first call checks the listener and the groups");
    faults.state().throttle = 1;
    let before = faults.state().attempts;
    let members = router.members(&"blue".into()).await.expect("members after one throttled attempt");
    assert!(members.is_empty());
    // DescribeTargetHealth twice (throttled, then answered), DescribeTags once.
    assert_eq!(faults.state().attempts - before, 3);
}

#[tokio::test]
async fn access_denied_fails_at_once_naming_the_action() {
    let Some(moto) = Moto::start() else { return };
    let (router, faults) = setup(&moto).await;
    faults.state().deny = true;
    let before = faults.state().attempts;
    let err = router.add_targets(&"blue".into(), &[target()]).await.expect_err("denied");
    assert!(!err.is_retryable(), "{err}");
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("access denied") && text.contains("elasticloadbalancing:DescribeListeners"), "{text}");
    assert_eq!(faults.state().attempts - before, 1, "AccessDenied must not be retried");
}
