"""Switchyard: warehouse-native customer journey orchestration."""
