//! `bluegreen report`: an SVG of one deployment — traffic per pool and serving targets per
//! pool over time, with step boundaries and the rollback marked.

use std::collections::BTreeMap;
use std::path::Path;

use bluegreen_core::{DeploymentRecord, Event, EventKind};
use plotters::prelude::*;

use crate::exit::CliError;

/// One pool's value over time: `(seconds, value)` points, stepwise.
type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// What the event log says about traffic and serving targets over time.
pub(crate) struct Timelines {
    pub(crate) traffic: Series,
    pub(crate) serving: Series,
    pub(crate) steps: Vec<f64>,
    pub(crate) rollback: Option<f64>,
    pub(crate) end: f64,
}

/// Reads the timelines from the events, starting from the plan's pre-deploy snapshot, with
/// every time shifted by `offset` seconds.
pub(crate) fn timelines(record: &DeploymentRecord, events: &[Event], offset: f64) -> Timelines {
    let mut traffic: Series = BTreeMap::new();
    let mut serving: Series = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for (pool, targets) in &record.plan.before.pools {
        let weight = f64::from(record.plan.before.split.weight(pool));
        traffic.entry(pool.to_string()).or_default().push((offset, weight));
        counts.insert(pool.to_string(), targets.len() as f64);
        serving.entry(pool.to_string()).or_default().push((offset, targets.len() as f64));
    }
    let (mut steps, mut rollback, mut end) = (Vec::new(), None, offset);
    for event in events {
        let t = offset + event.at.as_secs_f64();
        end = end.max(t);
        let mut count = |pool: &str, delta: f64, serving: &mut Series| {
            let c = counts.entry(pool.to_owned()).or_default();
            *c = (*c + delta).max(0.0);
            serving.entry(pool.to_owned()).or_default().push((t, *c));
        };
        match &event.kind {
            EventKind::StepStarted { .. } => steps.push(t),
            EventKind::RollbackStarted { .. } => rollback = Some(t),
            EventKind::TrafficShifted { to, .. } => {
                for (pool, weight) in to.iter() {
                    traffic.entry(pool.to_string()).or_default().push((t, f64::from(weight)));
                }
            }
            EventKind::TargetsRegistered { pool, targets } => count(pool.as_str(), targets.len() as f64, &mut serving),
            EventKind::TargetsDrained { pool, targets, .. } => {
                count(pool.as_str(), -(targets.len() as f64), &mut serving)
            }
            _ => {}
        }
    }
    Timelines { traffic, serving, steps, rollback, end: end.max(1.0) }
}

/// Deployments one after the other on one time axis.
pub(crate) fn merge(parts: Vec<Timelines>) -> Timelines {
    let mut all =
        Timelines { traffic: Series::new(), serving: Series::new(), steps: Vec::new(), rollback: None, end: 1.0 };
    for part in parts {
        for (pool, points) in part.traffic {
            all.traffic.entry(pool).or_default().extend(points);
        }
        for (pool, points) in part.serving {
            all.serving.entry(pool).or_default().extend(points);
        }
        all.steps.extend(part.steps);
        all.rollback = all.rollback.or(part.rollback);
        all.end = all.end.max(part.end);
    }
    all
}

/// The title of one deployment's report.
pub(crate) fn title(record: &DeploymentRecord) -> String {
    format!(
        "{} {} → {} ({})",
        record.service,
        record.plan.from_version.as_ref().map_or("nothing".into(), ToString::to_string),
        record.plan.spec.version,
        record.outcome.as_ref().map_or("running".into(), |o| o.status.to_string())
    )
}

/// Turns a stepwise series into line points (each value held until the next).
fn stairs(points: &[(f64, f64)], end: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for (i, (t, v)) in points.iter().enumerate() {
        if let Some((_, previous)) = i.checked_sub(1).map(|j| points[j]) {
            out.push((*t, previous));
        }
        out.push((*t, *v));
    }
    if let Some((_, v)) = points.last() {
        out.push((end, *v));
    }
    out
}

fn draw_error(e: impl std::fmt::Display) -> CliError {
    CliError::needs_human(format!("cannot draw the report: {e}"))
}

/// Writes one deployment's SVG.
pub(crate) fn write_svg(record: &DeploymentRecord, events: &[Event], out: &Path) -> Result<(), CliError> {
    draw(&title(record), &timelines(record, events, 0.0), out)
}

/// Draws `t` as an SVG at `out`.
pub(crate) fn draw(title: &str, t: &Timelines, out: &Path) -> Result<(), CliError> {
    let root = SVGBackend::new(out, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(draw_error)?;
    let (top, bottom) = root.split_vertically(300);
    let max_serving = t.serving.values().flatten().map(|(_, v)| *v).fold(1.0_f64, f64::max);
    let colors = [BLUE, GREEN, MAGENTA, CYAN];
    for (area, series, caption, y_max) in
        [(&top, &t.traffic, "traffic (%)", 100.0), (&bottom, &t.serving, "serving targets", max_serving + 1.0)]
    {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(44)
            .caption(caption, ("sans-serif", 16))
            .build_cartesian_2d(0.0..t.end, 0.0..y_max)
            .map_err(draw_error)?;
        chart.configure_mesh().x_desc("seconds").draw().map_err(draw_error)?;
        for step in &t.steps {
            chart.draw_series(LineSeries::new([(*step, 0.0), (*step, y_max)], BLACK.mix(0.12))).map_err(draw_error)?;
        }
        if let Some(at) = t.rollback {
            chart
                .draw_series(LineSeries::new([(at, 0.0), (at, y_max)], RED.stroke_width(2)))
                .map_err(draw_error)?
                .label("rollback")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        }
        for (i, (pool, points)) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(stairs(points, t.end), color.stroke_width(2)))
                .map_err(draw_error)?
                .label(pool.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error)?;
    }
    root.present().map_err(draw_error)?;
    Ok(())
}
