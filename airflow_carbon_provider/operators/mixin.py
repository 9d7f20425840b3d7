"""The carbon parameters that carbon-aware operators and sensors share.

:class:`CarbonScheduledMixin` keeps a task's carbon parameters as given (Jinja strings
included), checks them at parse time, and builds the
:class:`~airflow_carbon_provider.scheduling.CarbonSchedule` at run time, after rendering.
"""

from __future__ import annotations

from typing import Any

from airflow_carbon_provider.scheduling import CarbonSchedule, ScheduleConfigError

__all__ = ["CarbonScheduledMixin"]


class CarbonScheduledMixin:
    """For tasks with carbon parameters: check them at parse time, build the schedule at run time.

    The task sets ``expected_duration``, ``max_delay``, ``deadline`` (possibly Jinja strings,
    rendered before ``execute``), ``_carbon_options`` and implements :meth:`_carbon_candidates`.
    """

    task_id: str
    expected_duration: Any
    max_delay: Any
    deadline: Any
    _carbon_options: dict[str, Any]

    def _carbon_candidates(self) -> Any:
        raise NotImplementedError

    def _prefixed(self, exc: ScheduleConfigError) -> ScheduleConfigError:
        return ScheduleConfigError(f"{type(self).__name__} {self.task_id!r}: {exc}")

    def _set_carbon_parameters(self, expected_duration: Any, max_delay: Any, deadline: Any,
                               **options: Any) -> None:
        """Keep the carbon parameters (templated ones as given) and check them at parse time."""
        self.expected_duration = expected_duration
        self.max_delay = max_delay
        self.deadline = deadline
        self._carbon_options = options
        self._check_carbon_parameters()

    def _check_carbon_parameters(self) -> None:
        """Validate at parse time; Jinja strings are checked once rendered."""
        try:
            CarbonSchedule.check_at_parse(
                self._carbon_candidates(), expected_duration=self.expected_duration, max_delay=self.max_delay,
                deadline=self.deadline, **self._carbon_options,
            )
        except ScheduleConfigError as exc:
            raise self._prefixed(exc) from None

    @property
    def carbon_schedule(self) -> CarbonSchedule:
        """The schedule built from the (rendered) carbon parameters."""
        try:
            return CarbonSchedule(
                self._carbon_candidates(), expected_duration=self.expected_duration, max_delay=self.max_delay,
                deadline=self.deadline, **self._carbon_options,
            )
        except ScheduleConfigError as exc:
            raise self._prefixed(exc) from None

