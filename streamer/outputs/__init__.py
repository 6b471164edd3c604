"""What viewers receive: MJPEG and WebRTC, read from a camera's hub of anonymized frames only."""
