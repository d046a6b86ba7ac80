"""The Meetkoffer: measurement campaigns at process-industry firms, findings and verified savings."""
