"""Board wiring and timing of the alarm co-processor (edit on the Pico, or ship another file).

Wiring (README "Alarm co-processor"): UART0 on GP0 (TX) / GP1 (RX) to the gateway's
UART, a magnetic buzzer (880 Hz PWM) on GP15 through a transistor, red / yellow / cyan LEDs on
GP16 / GP17 / GP18 with series resistors, common ground.
"""

UART_ID = 0
BAUD = 115200
UART_TX = 0
UART_RX = 1
BUZZER_PIN = 15
BUZZER_HZ = 880  # IEC 60601-1-8 wants a fundamental of 150-1000 Hz; drive a magnetic buzzer, not a 4 kHz piezo
LED_RED = 16
LED_YELLOW = 17
LED_CYAN = 18
TIMEOUT_MS = 3000  # no valid heartbeat this long: sound the alarm-system-failure pattern
BOOT_GRACE_MS = 120000  # after power-on, the gateway's boot may take this long before the first heartbeat
MIRROR = True  # play the gateway's highest active alarm too (the gateway can switch it: MIRROR,0|1)
REPL_TIMEOUT_MS = 60000  # a REPL handed over for an update resets the board after this unless soft-reset first
POLL_MS = 5  # UART poll period
PLAY_MS = 10  # pattern resolution
