//! The EC2 instance state machine: states and their codes, which API action is allowed from
//! which state, and what a workload's own exit leads to.
//!
//! EC2 answers an action on an instance already in (or heading to) the action's end state with
//! success and no change (stopping a `stopped` instance reports `stopped` → `stopped`); an action
//! that makes no sense from the current state is `IncorrectInstanceState`.

use proto::ebs::v1 as pb;
use serde::{Deserialize, Serialize};

/// An instance's state. The discriminant is EC2's state code (low byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Launching or starting: volumes are being created or attached.
    Pending = 0,
    /// The workload runs.
    Running = 16,
    /// Terminating: the workload is being stopped, then volumes detached and deleted.
    ShuttingDown = 32,
    /// Gone; stays visible for a while.
    Terminated = 48,
    /// Stopping: the workload has been asked to exit.
    Stopping = 64,
    /// No workload; EBS volumes stay attached, instance store is erased.
    Stopped = 80,
}

impl InstanceState {
    /// EC2's state code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// EC2's state name.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<InstanceState> {
        [
            InstanceState::Pending,
            InstanceState::Running,
            InstanceState::ShuttingDown,
            InstanceState::Terminated,
            InstanceState::Stopping,
            InstanceState::Stopped,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// The `ebs.v1` message.
    pub fn to_pb(self) -> pb::InstanceState {
        pb::InstanceState {
            code: self.code(),
            name: self.as_str().to_string(),
        }
    }
}

/// An API action on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// StartInstances.
    Start,
    /// StopInstances.
    Stop,
    /// RebootInstances.
    Reboot,
    /// TerminateInstances.
    Terminate,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Start => "started",
            Action::Stop => "stopped",
            Action::Reboot => "rebooted",
            Action::Terminate => "terminated",
        }
    }
}

/// What an allowed action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Enter this state now; the work behind it runs in the background.
    Begin(InstanceState),
    /// Restart the workload in place; the state stays `running`.
    Reboot,
    /// Already there, or on the way: nothing to do.
    Unchanged,
}

/// An action that the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The instance '{instance_id}' is not in a state from which it can be {verb}.", verb = action.verb())]
pub struct IncorrectInstanceState {
    /// The instance.
    pub instance_id: String,
    /// Its state.
    pub state: InstanceState,
    /// What was asked.
    pub action: Action,
}

impl IncorrectInstanceState {
    /// EC2's error code.
    pub const CODE: &'static str = "IncorrectInstanceState";
}

/// What `action` does to an instance in `state`.
pub fn transition(
    instance_id: &str,
    state: InstanceState,
    action: Action,
) -> Result<Transition, IncorrectInstanceState> {
    use InstanceState as S;
    let t = match (action, state) {
        (Action::Start, S::Stopped) => Transition::Begin(S::Pending),
        (Action::Start, S::Pending | S::Running) => Transition::Unchanged,
        (Action::Stop, S::Running | S::Pending) => Transition::Begin(S::Stopping),
        (Action::Stop, S::Stopping | S::Stopped) => Transition::Unchanged,
        (Action::Reboot, S::Running) => Transition::Reboot,
        (Action::Terminate, S::Terminated | S::ShuttingDown) => Transition::Unchanged,
        (Action::Terminate, _) => Transition::Begin(S::ShuttingDown),
        _ => {
            return Err(IncorrectInstanceState {
                instance_id: instance_id.to_string(),
                state,
                action,
            });
        }
    };
    Ok(t)
}

/// What happens when a workload exits on its own (EC2 `InstanceInitiatedShutdownBehavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShutdownBehavior {
    /// The instance stops (EC2's default).
    #[default]
    Stop,
    /// The instance terminates.
    Terminate,
}

impl ShutdownBehavior {
    /// EC2's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownBehavior::Stop => "stop",
            ShutdownBehavior::Terminate => "terminate",
        }
    }

    /// The behaviour named `name`.
    pub fn parse(name: &str) -> Option<ShutdownBehavior> {
        match name {
            "stop" => Some(ShutdownBehavior::Stop),
            "terminate" => Some(ShutdownBehavior::Terminate),
            _ => None,
        }
    }

    /// The action a workload's own exit triggers.
    pub fn action(self) -> Action {
        match self {
            ShutdownBehavior::Stop => Action::Stop,
            ShutdownBehavior::Terminate => Action::Terminate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InstanceState as S;

    #[test]
    fn codes_and_names_are_ec2s() {
        let all = [
            (S::Pending, 0, "pending"),
            (S::Running, 16, "running"),
            (S::ShuttingDown, 32, "shutting-down"),
            (S::Terminated, 48, "terminated"),
            (S::Stopping, 64, "stopping"),
            (S::Stopped, 80, "stopped"),
        ];
        for (s, code, name) in all {
            assert_eq!(s.code(), code);
            assert_eq!(s.as_str(), name);
            assert_eq!(S::parse(name), Some(s));
            assert_eq!(s.to_pb().code, code);
        }
        assert_eq!(S::parse("rebooting"), None);
    }

    #[test]
    fn allowed_transitions() {
        let t = |s, a| transition("i-1", s, a);
        assert_eq!(
            t(S::Stopped, Action::Start),
            Ok(Transition::Begin(S::Pending))
        );
        assert_eq!(t(S::Running, Action::Start), Ok(Transition::Unchanged));
        assert_eq!(
            t(S::Running, Action::Stop),
            Ok(Transition::Begin(S::Stopping))
        );
        assert_eq!(t(S::Stopped, Action::Stop), Ok(Transition::Unchanged));
        assert_eq!(t(S::Running, Action::Reboot), Ok(Transition::Reboot));
        for s in [S::Pending, S::Running, S::Stopping, S::Stopped] {
            assert_eq!(
                t(s, Action::Terminate),
                Ok(Transition::Begin(S::ShuttingDown))
            );
        }
        assert_eq!(
            t(S::Terminated, Action::Terminate),
            Ok(Transition::Unchanged)
        );
    }

    #[test]
    fn refused_transitions_name_the_state() {
        let refused = [
            (S::Stopping, Action::Start),
            (S::Terminated, Action::Start),
            (S::ShuttingDown, Action::Stop),
            (S::Terminated, Action::Stop),
            (S::Stopped, Action::Reboot),
            (S::Pending, Action::Reboot),
        ];
        for (s, a) in refused {
            let e = transition("i-0123", s, a).unwrap_err();
            assert_eq!(e.state, s);
            assert!(e.to_string().contains("i-0123"), "{e}");
        }
    }

    #[test]
    fn shutdown_behavior() {
        assert_eq!(ShutdownBehavior::default(), ShutdownBehavior::Stop);
        assert_eq!(
            ShutdownBehavior::parse("terminate"),
            Some(ShutdownBehavior::Terminate)
        );
        assert_eq!(ShutdownBehavior::parse("halt"), None);
        assert_eq!(ShutdownBehavior::Terminate.action(), Action::Terminate);
    }
}
