//! The single conversion from [`crate::error::Error`] to the exception classes of `errors.py`.

use pyo3::PyErr;

use crate::error::{Error, ErrorKind};

pyo3::import_exception!(truthound.stores.observability.errors, InvalidArgumentError);
pyo3::import_exception!(
    truthound.stores.observability.errors,
    InvalidMetricNameError
);
pyo3::import_exception!(truthound.stores.observability.errors, InvalidLabelError);
pyo3::import_exception!(truthound.stores.observability.errors, MetricConflictError);
pyo3::import_exception!(
    truthound.stores.observability.errors,
    InvalidMetricValueError
);
pyo3::import_exception!(truthound.stores.observability.errors, AuditIOError);
pyo3::import_exception!(truthound.stores.observability.errors, AuditClosedError);

pyo3::import_exception!(truthound.stores.observability.errors, MultiprocessError);
pyo3::import_exception!(
    truthound.stores.observability.errors,
    InvalidArgumentTypeError
);

impl From<Error> for PyErr {
    #[cold]
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error.kind {
            ErrorKind::InvalidArgument => InvalidArgumentError::new_err(message),
            ErrorKind::InvalidMetricName => InvalidMetricNameError::new_err(message),
            ErrorKind::InvalidLabel => InvalidLabelError::new_err(message),
            ErrorKind::MetricConflict => MetricConflictError::new_err(message),
            ErrorKind::InvalidMetricValue => InvalidMetricValueError::new_err(message),
            ErrorKind::AuditIo => AuditIOError::new_err(message),
            ErrorKind::AuditClosed => AuditClosedError::new_err(message),
            ErrorKind::Multiprocess => MultiprocessError::new_err(message),
            ErrorKind::InvalidArgumentType => InvalidArgumentTypeError::new_err(message),
        }
    }
}
