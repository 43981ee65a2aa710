//! API base path + method + path template matching on the normalized request path.
