"""Fakes of outside services (Twilio REST, ...) served on loopback for tests."""
